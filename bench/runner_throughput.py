"""The evaluation runner's throughput on one GPU, and its overhead over sampling the same batches bare.

A random-weight checkpoint of SD1.5's size (tests/dev/make_checkpoint.py with SD1.5's unet_config: ComfyUI
detects and loads it as SD1.5, with a random CLIP-L and TAESD) and random CLIP ViT-B/16 and BLIP-base metric models
of the real sizes (the BLIP tokenizer is the test harness's small vocabulary, so its output layer is smaller than
the real 30524-token one). The grid: the first prompt of each category x --seeds seeds x {standard, A&E},
512x512, 50 DDIM steps, the paper's A&E settings, batches of --batch.

Measured, each after a warm-up batch: the runner with the CLIP and BLIP metrics, the runner without metrics, and
the bare sampling of the same batches (the stock KSampler function for standard batches, the A&E KSampler's for A&E
batches, with the batch's first seed). Writes runner_throughput.json and .md under --out.

    python3 -m bench.runner_throughput --comfyui .device/comfyui --out $OUT/runner
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from harness import host, models

from . import ROOT


def metric_folders(root: Path) -> tuple[Path, Path]:
    """Random CLIP ViT-B/16 and BLIP-base (captioning) folders of the real architectures, weights drawn by the
    harness, tokenizers as in the test harness."""
    from transformers import BlipConfig, BlipForConditionalGeneration, CLIPConfig, CLIPModel
    from harness import metric_models
    clip_dir, blip_dir = metric_models.tiny_clip_folder(root / "clip"), metric_models.tiny_blip_folder(root / "blip")
    clip_config = CLIPConfig.from_pretrained(clip_dir)
    clip_config.vision_config.update(dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                          num_attention_heads=12, image_size=224, patch_size=16))
    clip_config.text_config.update(dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                                        num_attention_heads=8))
    clip_config.projection_dim = 512
    blip_config = BlipConfig.from_pretrained(blip_dir)
    blip_config.vision_config.update(dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                          num_attention_heads=12, image_size=384, patch_size=16))
    blip_config.text_config.update(dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, encoder_hidden_size=768, max_position_embeddings=512))
    for model, folder in ((CLIPModel(clip_config), clip_dir), (BlipForConditionalGeneration(blip_config), blip_dir)):
        metric_models.save_with_drawn_weights(model, folder, seed=3)
    return clip_dir, blip_dir


def loaded(weights, device):
    """The runner's --model-loader: the checkpoint main() built (kept on the `bench` package, which the runner's
    import of this module shares with `python -m`'s copy)."""
    import bench
    return bench.runner_model


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--comfyui")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "runner")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--quick", action="store_true", help="the small test UNet and tiny metric models (checks the "
                   "script on a CPU)")
    args = p.parse_args()
    host.import_pack()
    host.import_comfy(host.find_comfyui(args.comfyui), cpu=args.cpu)
    import comfy.sd
    import comfy.utils

    from aande_pack.aande_eval import run as runner
    from aande_pack.aande_eval.grid import make_batches
    from aande_pack.aande_eval.prompts import load_prompts
    from aande_pack.nodes import compat
    from aande_pack.nodes.engine.patch import ksample
    sys.path.insert(0, str(ROOT / "tests" / "dev"))
    import make_checkpoint
    comfy.utils.PROGRESS_BAR_ENABLED = False

    import bench
    t0 = time.perf_counter()
    unet = None if args.quick else {**models.KINDS["sd15-full"].unet, "num_head_channels": -1}
    state = make_checkpoint.build_state_dict(unet)
    model, clip, vae = comfy.sd.load_state_dict_guess_config(state, output_vae=True, output_clip=True)[:3]
    del state
    bench.runner_model = (model, clip, vae)
    work = Path(tempfile.mkdtemp(prefix="aande-runner-"))
    if args.quick:
        from harness import metric_models
        clip_dir, blip_dir = metric_models.tiny_clip_folder(work / "clip"), metric_models.tiny_blip_folder(work / "blip")
    else:
        clip_dir, blip_dir = metric_folders(work)
    setup_s = time.perf_counter() - t0
    prompts = [load_prompts(categories=[c], per_category=1)[0] for c in ("animals", "animals_objects", "objects")]
    prompt_file = work / "prompts.json"
    prompt_file.write_text(json.dumps({p.category: [p.text] for p in prompts}))
    common = ["--comfyui", str(host.find_comfyui(args.comfyui)), "--model-loader",
              "bench.runner_throughput:loaded", "--prompts", str(prompt_file), "--seeds", str(args.seeds),
              "--batch", str(args.batch), "--steps", str(args.steps), "--size", str(args.size)] + \
        (["--cpu"] if args.cpu else [])
    results = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() and not args.cpu else "cpu",
               "setup_s": setup_s, "grid": {"prompts": len(prompts), "seeds": args.seeds, "methods": 2,
                                            "batch": args.batch, "steps": args.steps, "size": args.size}}

    def timed_runner(name, extra):
        out = work / name
        runner.main(common + ["--out", str(out), "--seeds", "1", "--first-seed", "1000"] + extra)  # warm-up
        shutil.rmtree(out)
        start = time.perf_counter()
        runner.main(common + ["--out", str(out)] + extra)
        return time.perf_counter() - start

    results["runner_metrics_s"] = timed_runner("with_metrics", ["--clip-model", str(clip_dir),
                                                                "--blip-model", str(blip_dir)])
    results["runner_no_metrics_s"] = timed_runner("no_metrics", ["--metrics", "none"])

    _, settings = runner.ae_settings([])
    batches = make_batches(prompts, list(range(args.seeds)), batch_size=args.batch)
    positive_negative = {}
    from aande_pack.nodes.declarations.select_tokens import AESelectSubjectTokens

    def bare(batch):
        if batch.prompt.text not in positive_negative:
            with torch.inference_mode():
                positive_negative[batch.prompt.text] = (
                    AESelectSubjectTokens().select(clip, batch.prompt.text, batch.prompt.subjects)[0],
                    compat.encode_prompt(clip, ""))
        positive, negative = positive_negative[batch.prompt.text]
        latent = {"samples": torch.zeros(len(batch.seeds), 4, args.size // 8, args.size // 8)}
        with torch.inference_mode():
            if batch.method == "ae":
                out, _ = ksample(model, batch.seeds[0], args.steps, 7.5, "ddim", "ddim_uniform", positive, negative,
                                 latent, 1.0, settings)
            else:
                (out,) = compat.common_ksampler(model, batch.seeds[0], args.steps, 7.5, "ddim", "ddim_uniform",
                                                positive, negative, latent)
            vae.decode(out["samples"])
        if torch.cuda.is_available() and not args.cpu:
            torch.cuda.synchronize()

    bare(batches[1])  # warm-up: an A&E batch
    start = time.perf_counter()
    for batch in batches:
        bare(batch)
    results["bare_s"] = time.perf_counter() - start
    images = len(prompts) * args.seeds * 2
    for key in ("runner_metrics_s", "runner_no_metrics_s", "bare_s"):
        results[key.replace("_s", "_images_per_min")] = images / results[key] * 60
    results["overhead_no_metrics"] = results["runner_no_metrics_s"] / results["bare_s"] - 1
    results["overhead_with_metrics"] = results["runner_metrics_s"] / results["bare_s"] - 1
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runner_throughput.json").write_text(json.dumps(results, indent=1))
    table = ["| what | seconds | images/min | over bare |", "| --- | --- | --- | --- |"]
    for key, label in (("bare_s", "bare sampling (stock KSampler / A&E KSampler), VAE decode"),
                       ("runner_no_metrics_s", "runner, no metrics"), ("runner_metrics_s", "runner, CLIP + BLIP")):
        over = "" if key == "bare_s" else f"{results[key] / results['bare_s'] - 1:+.1%}"
        table.append(f"| {label} | {results[key]:.1f} | {images / results[key] * 60:.1f} | {over} |")
    (args.out / "runner_throughput.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    print(json.dumps(results, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
