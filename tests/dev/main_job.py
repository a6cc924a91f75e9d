"""The main job (run through tests/dev/main_job.sh): an example workflow on a real, headless ComfyUI.

Starts ComfyUI 0.3.75 with the pack (tests/harness/server.py) and converts an example workflow to an API prompt:
- by default example (b), `ae_compare_standard_sd15.json` (standard and A&E side by side, same seed), on the toy
  model trained for docs/efficacy.md: its Load Checkpoint becomes the test-and-demo loader "Load A&E Toy Model"
  (tests/demo_nodes/aande_toy_loader, installed beside the pack), the prompt a held-out composition of the toy
  world, and A&E reads 16x16 maps (attention_res latent/2, the benchmark's setting);
- with --ckpt, example (a), `ae_txt2img_sd15.json`, on that checkpoint.
It sets prompt, subjects, size, steps and seed, runs it, copies the saved images and attention previews into --out,
prints their paths, and stops the server. ComfyUI runs on the CPU here (--cpu).
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

EXAMPLES = ROOT / "example_workflows"
TOY_LOADER = ROOT / "tests" / "demo_nodes" / "aande_toy_loader"
TOY_WEIGHTS = ROOT / "toyworld" / "weights" / "toyworld.safetensors"
TOY = {"example": "ae_compare_standard_sd15.json", "prompt": "a circle and a square", "subjects": "circle, square",
       "size": 256}  # 256: the toy model's 32x32 latent, as it was trained
CKPT = {"example": "ae_txt2img_sd15.json", "prompt": "a cat and a frog", "subjects": "cat, frog", "size": 512}
PACK_NODES = {"AESelectSubjectTokens", "AEKSampler", "AEAttentionMapPreview"}  # the nodes both examples use


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="main_job.sh", description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", type=Path, default=None,
                        help="checkpoint file (SD1.x/SD2.x/SDXL .safetensors or .ckpt) for example (a); default: "
                             "example (b) on the toy model (toyworld/weights/)")
    parser.add_argument("--prompt", default=None, help=f"default {TOY['prompt']!r}, with --ckpt {CKPT['prompt']!r}")
    parser.add_argument("--subjects", default=None, help=f"subject words or token indices (docs/subject_tokens.md); "
                        f"default {TOY['subjects']!r}, with --ckpt {CKPT['subjects']!r}")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "output" / "main_job")
    parser.add_argument("--size", type=int, default=None,
                        help=f"image width and height, a multiple of 8 of at least 64 (default {TOY['size']} for the "
                             f"toy model, {CKPT['size']} with --ckpt)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.ckpt is not None and not args.ckpt.is_file():
        parser.error(f"--ckpt {args.ckpt} is not a file: give the path of a checkpoint file")
    if args.ckpt is None and not TOY_WEIGHTS.is_file():
        parser.error(f"{TOY_WEIGHTS} is missing: it is committed with the repository (git checkout it)")
    job = CKPT if args.ckpt is not None else TOY
    args.example = EXAMPLES / job["example"]
    args.prompt = job["prompt"] if args.prompt is None else args.prompt
    args.subjects = job["subjects"] if args.subjects is None else args.subjects
    args.size = job["size"] if args.size is None else args.size
    if args.size < 64 or args.size % 8:
        parser.error(f"--size {args.size}: use a multiple of 8 of at least 64 (A&E reads attention maps at "
                     f"1/32 of the image side and needs at least 2x2)")
    if args.steps < 1:
        parser.error(f"--steps {args.steps}: use at least 1 (the paper uses 50)")
    return args


def job_prompt(object_info, args):
    """The example as an API prompt, with this job's model, prompt, subjects, size, steps and seed."""
    prompt = to_api_prompt(json.loads(args.example.read_text()), object_info)
    loader = nodes_of(prompt, "CheckpointLoaderSimple")[0]
    if args.ckpt is None:  # the toy loader has Load Checkpoint's outputs: MODEL, CLIP, VAE
        loader.update(class_type="AELoadToyModel", inputs={"weights": TOY_WEIGHTS.name})
    else:
        loader["inputs"]["ckpt_name"] = args.ckpt.name
    nodes_of(prompt, "AESelectSubjectTokens")[0]["inputs"].update(text=args.prompt, subjects=args.subjects)
    nodes_of(prompt, "EmptyLatentImage")[0]["inputs"].update(width=args.size, height=args.size)
    for sampler in nodes_of(prompt, "AEKSampler"):
        sampler["inputs"]["steps"] = args.steps
        if args.ckpt is None:
            sampler["inputs"]["attention_res"] = "latent/2"
    seeds = nodes_of(prompt, "PrimitiveInt") or nodes_of(prompt, "AEKSampler")
    seeds[0]["inputs"]["value" if seeds[0]["class_type"] == "PrimitiveInt" else "seed"] = args.seed
    return prompt


def sampler_of(prompt, key):
    """The AEKSampler node upstream of node `key` (following its first linked input), or None."""
    node = prompt[key]
    while node["class_type"] != "AEKSampler":
        links = [v for v in node["inputs"].values() if isinstance(v, list) and len(v) == 2 and str(v[0]) in prompt]
        if not links:
            return None
        node = prompt[str(links[0][0])]
    return node


def collect(server, prompt, outputs, out_dir):
    """Copy the saved image(s) and attention preview(s) from the server's folders into out_dir, named image.png and
    attention_preview.png, or with _standard / _ae after them when the example samples both ways."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = {"SaveImage": "image", "AEAttentionMapPreview": "attention_preview"}
    both = len(nodes_of(prompt, "AEKSampler")) > 1
    copied = []
    for key, node in prompt.items():
        for i, item in enumerate(outputs.get(key, {}).get("images", [])):
            source = server.base_dir / item["type"] / item["subfolder"] / item["filename"]
            method = ""
            if both:
                method = "_ae" if sampler_of(prompt, key)["inputs"]["attend_and_excite"] else "_standard"
            suffix = f"_{i}" if i else ""
            target = out_dir / f"{names[node['class_type']]}{method}{suffix}.png"
            shutil.copyfile(source, target)
            copied.append(target)
    return copied


def main(argv=None):
    args = parse_args(argv)
    started = time.monotonic()
    model = args.ckpt.name if args.ckpt is not None else f"the toy model ({TOY_WEIGHTS.name})"
    print(f"[main job] starting ComfyUI with the pack and {model} (log: tests/output/)", flush=True)
    with tempfile.TemporaryDirectory(prefix="aande-main-job-") as base:
        server = ComfyServer(base, checkpoints=[args.ckpt] if args.ckpt is not None else [], log_name="main-job",
                             extra_custom_nodes=[TOY_LOADER] if args.ckpt is None else [])
        try:
            server.start()
            server.check_registration(PACK_NODES | ({"AELoadToyModel"} if args.ckpt is None else set()))
            prompt = job_prompt(server.get("/object_info"), args)
            print(f"[main job] running {args.example.name}: {args.prompt!r}, subjects {args.subjects!r}, "
                  f"{args.size}x{args.size}, {args.steps} steps, seed {args.seed}", flush=True)
            outputs = server.run_prompt(prompt, timeout=6 * 3600)
            files = collect(server, prompt, outputs, args.out)
        finally:
            server.stop()
    print(f"[main job] done in {time.monotonic() - started:.0f}s; files:")
    for path in files:
        print(path)


if __name__ == "__main__":
    main()
