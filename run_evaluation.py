"""The paper's evaluation (Table 1 and the CLIP figure) for a checkpoint, outside a ComfyUI server:

    python run_evaluation.py --comfyui ~/ComfyUI --ckpt ~/ComfyUI/models/checkpoints/sd-v1-4.ckpt --out eval/sd14
    torchrun --nproc-per-node 4 run_evaluation.py ...     (one GPU per process)

`--help` lists the options; docs/evaluation.md says what it writes and what it costs. The pack's folder is
imported as the package `aande_pack` (its folder name has a hyphen)."""
import sys
import types
from pathlib import Path

if "aande_pack" not in sys.modules:
    _package = types.ModuleType("aande_pack")
    _package.__path__ = [str(Path(__file__).resolve().parent)]
    sys.modules["aande_pack"] = _package

from aande_pack.aande_eval.run import main  # noqa: E402

if __name__ == "__main__":
    main()
