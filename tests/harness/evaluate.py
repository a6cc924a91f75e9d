"""run_evaluation.py on the dev host: ComfyUI imported through the harness first (its torchvision stand-in must
stay hidden from transformers, whose CLIP and BLIP the metrics load), then the runner with the same arguments.

    python tests/harness/evaluate.py --comfyui .dev/comfyui-0.3.75 --ckpt ... --out ...
    python -m torch.distributed.run --nproc-per-node 2 tests/harness/evaluate.py ... --cpu
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ -> harness

from harness.host import import_comfy  # noqa: E402

if __name__ == "__main__":
    argv = sys.argv[1:]
    import_comfy(argv[argv.index("--comfyui") + 1], cpu="--cpu" in argv)
    from aande_pack.aande_eval.run import main
    main(argv)
