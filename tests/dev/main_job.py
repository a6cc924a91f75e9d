"""The main job (run through tests/dev/main_job.sh): example workflow (a) on a real, headless ComfyUI.

Starts ComfyUI 0.3.75 with the pack (tests/harness/server.py), converts example_workflows/ae_txt2img_sd15.json to
an API prompt, sets the checkpoint, prompt, subjects and size, runs it, copies the saved image and the attention
preview into --out, prints their paths, and stops the server. The embedded small checkpoint has random weights:
its images are noise; it shows that the whole path runs. ComfyUI runs on the CPU here (--cpu).
"""
import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ -> harness
from harness.host import ROOT  # noqa: E402
from harness.server import ComfyServer  # noqa: E402
from harness.workflow import nodes_of, to_api_prompt  # noqa: E402

EXAMPLE = ROOT / "example_workflows" / "ae_txt2img_sd15.json"
SMALL = ROOT / ".dev" / "models" / "checkpoints" / "aande-small-sd15.safetensors"
PACK_NODES = {"AESelectSubjectTokens", "AEKSampler", "AEAttentionMapPreview"}  # the nodes example (a) uses
SMALL_SIZE, REAL_SIZE = 256, 512  # 256: about a minute for the small checkpoint's 50 steps on 2 CPU cores


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="main_job.sh", description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", type=Path, default=SMALL,
                        help="checkpoint file (SD1.x/SD2.x/SDXL .safetensors or .ckpt); default: the embedded "
                             "small SD1.5 checkpoint with random weights")
    parser.add_argument("--prompt", default="a cat and a frog")
    parser.add_argument("--subjects", default="cat, frog", help="subject words or token indices (see "
                                                                "docs/subject_tokens.md)")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "output" / "main_job")
    parser.add_argument("--size", type=int, default=None,
                        help=f"image width and height, a multiple of 8 of at least 64 (default {SMALL_SIZE} for the "
                             f"small checkpoint, {REAL_SIZE} otherwise)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.ckpt.is_file():
        hint = "run `bash tests/dev/setup.sh`" if args.ckpt == SMALL else "give the path of a checkpoint file"
        parser.error(f"--ckpt {args.ckpt} is not a file: {hint}")
    if args.size is None:
        args.size = SMALL_SIZE if args.ckpt.resolve() == SMALL.resolve() else REAL_SIZE
    if args.size < 64 or args.size % 8:
        parser.error(f"--size {args.size}: use a multiple of 8 of at least 64 (A&E reads attention maps at "
                     f"1/32 of the image side and needs at least 2x2)")
    if args.steps < 1:
        parser.error(f"--steps {args.steps}: use at least 1 (the paper uses 50)")
    return args


def job_prompt(object_info, args):
    """Example (a) as an API prompt, with this job's checkpoint, prompt, subjects, size, steps and seed."""
    prompt = to_api_prompt(json.loads(EXAMPLE.read_text()), object_info)
    nodes_of(prompt, "CheckpointLoaderSimple")[0]["inputs"]["ckpt_name"] = args.ckpt.name
    nodes_of(prompt, "AESelectSubjectTokens")[0]["inputs"].update(text=args.prompt, subjects=args.subjects)
    nodes_of(prompt, "EmptyLatentImage")[0]["inputs"].update(width=args.size, height=args.size)
    nodes_of(prompt, "AEKSampler")[0]["inputs"].update(steps=args.steps, seed=args.seed)
    nodes_of(prompt, "SaveImage")[0]["inputs"]["filename_prefix"] = "aande_main_job"
    return prompt


def collect(server, prompt, outputs, out_dir):
    """Copy the saved image(s) and the attention preview from the server's folders into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = {"SaveImage": "image", "AEAttentionMapPreview": "attention_preview"}
    copied = []
    for key, node in prompt.items():
        for i, item in enumerate(outputs.get(key, {}).get("images", [])):
            source = server.base_dir / item["type"] / item["subfolder"] / item["filename"]
            suffix = f"_{i}" if i else ""
            target = out_dir / f"{names[node['class_type']]}{suffix}.png"
            shutil.copyfile(source, target)
            copied.append(target)
    return copied


def main(argv=None):
    args = parse_args(argv)
    started = time.monotonic()
    print(f"[main job] starting ComfyUI with the pack and {args.ckpt.name} (log: tests/output/)", flush=True)
    with tempfile.TemporaryDirectory(prefix="aande-main-job-") as base:
        server = ComfyServer(base, checkpoints=[args.ckpt], log_name="main-job")
        try:
            server.start()
            server.check_registration(PACK_NODES)
            prompt = job_prompt(server.get("/object_info"), args)
            print(f"[main job] running example (a): {args.prompt!r}, subjects {args.subjects!r}, "
                  f"{args.size}x{args.size}, {args.steps} steps, seed {args.seed}", flush=True)
            outputs = server.run_prompt(prompt, timeout=6 * 3600)
            files = collect(server, prompt, outputs, args.out)
        finally:
            server.stop()
    if args.ckpt.resolve() == SMALL.resolve():
        print("[main job] note: the embedded checkpoint has random weights, so the image is noise")
    print(f"[main job] done in {time.monotonic() - started:.0f}s; files:")
    for path in files:
        print(path)


if __name__ == "__main__":
    main()
