"""The device job's sanity grid: a trained toy model sampled on training-distribution and held-out prompts,
standard vs A&E, judged; `python -m toyworld.sanity --weights W --out DIR [--device cuda] [--deadline EPOCH]`.

Why: before any benchmark, one look must say whether the model draws the world (training prompts right without
A&E), fails on held-out compositions, and whether A&E changes anything, and whether each subject's attention
map peaks on its object (the probe's lesson: A&E cannot grip maps that do not). Sampling is the A&E KSampler's own
code path (aande_pack.nodes.engine.patch.ksample, ComfyUI's common_ksampler) with the paper's settings: 50 ddim
steps (ddim_uniform), CFG 7.5, an empty negative prompt; "standard" is the same node with attend_and_excite off.

Passes, in order of priority (each prompt's batch of --seeds images comes from one seed, as ComfyUI's KSampler
draws a batch): standard and A&E at attention_res auto (latent/4: 8x8 maps) on every prompt, then A&E at
latent/2 (16x16) on every prompt. sanity.json is rewritten after every call and the grid after every prompt, so
a job cut short keeps what it did; --deadline (a Unix time) stops before a call that would start after it.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from . import judge, world
from .comfy_host import import_comfy

MODES = {  # name -> A&E KSampler inputs that differ from the defaults
    "standard": {"attend_and_excite": False},
    "ae": {},
    "ae_latent2": {"attention_res": "latent/2"},
}
PASSES = (("standard", "ae"), ("ae_latent2",))


def held_out_sample() -> list[tuple[str, str]]:
    """(category, prompt): the first and the middle prompt of each benchmark category (a fixed choice)."""
    return [(category, p) for category, prompts in world.BENCHMARK_PROMPTS.items()
            for p in (prompts[0], prompts[len(prompts) // 2])]


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m toyworld.sanity", description=__doc__.split("\n")[0])
    p.add_argument("--weights", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="folder for sanity.json and sanity_grid.png")
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--cfg", type=float, default=7.5)
    p.add_argument("--seeds", type=int, default=2, help="images per prompt and mode (one batch from seed 0)")
    p.add_argument("--prompts", type=int, default=None, help="use only the first N prompts (CPU checks)")
    p.add_argument("--deadline", type=float, default=float("inf"), help="Unix time after which no call starts")
    return p.parse_args(argv)


def ae_settings(mode: str):
    from aande_pack.aande_core.config import AESettings
    return AESettings(**MODES[mode])


def attention_on_subjects(record, found, prompt: world.Prompt) -> list[list[bool | None]]:
    """Per image, per subject: does the subject's map (the last recorded A&E step, as the loss sees it) peak
    inside the box of a judged object of that shape (one map cell of slack)? None: no such object was found."""
    if not record.steps:
        return []
    maps = record.steps[-1].subject_maps.float()  # (B, S, h, w)
    out = []
    for b in range(maps.shape[0]):
        row = []
        for k, subject in enumerate(prompt.subjects):
            m = maps[b, k]
            h, w = m.shape
            i, j = divmod(int(m.argmax()), w)
            cell = world.SIZE / w
            x, y = (j + 0.5) * cell, (i + 0.5) * cell
            boxes = [f.bbox for f in found[b] if f.shape == subject.shape]
            row.append(None if not boxes else any(
                x0 - cell <= x <= x1 + 1 + cell and y0 - cell <= y <= y1 + 1 + cell for x0, y0, x1, y1 in boxes))
        out.append(row)
    return out


def run_prompt(model, clip, vae, prompt_text, mode, args, negative):
    """One A&E KSampler call (a batch of args.seeds images from seed 0): (images (B, H, W, 3), record, seconds)."""
    from aande_pack.nodes.declarations.select_tokens import AESelectSubjectTokens
    from aande_pack.nodes.engine.patch import ksample
    import nodes as comfy_nodes
    prompt = world.parse_prompt(prompt_text)
    started = time.perf_counter()
    with torch.inference_mode():
        positive, _ = AESelectSubjectTokens().select(clip, prompt_text, prompt.subject_words)
        side = world.SIZE * 8
        latent = comfy_nodes.EmptyLatentImage().generate(side, side, args.seeds)[0]
        out, record = ksample(model, 0, args.steps, args.cfg, "ddim", "ddim_uniform", positive, negative, latent,
                              1.0, ae_settings(mode))
        images = vae.decode(out["samples"])
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return images, record, time.perf_counter() - started


def summarise(rows) -> dict:
    """Per (group, mode): images, how many have both subjects present / colours bound, and the median border
    brightness (judge.border_brightness: at most 0.164 on renders of the world)."""
    out, borders = {}, {}
    for r in rows:
        key = f"{r['group']}/{r['mode']}"
        s = out.setdefault(key, {"images": 0, "both": 0, "binding_n": 0, "binding": 0})
        s["images"] += 1
        s["both"] += bool(r["judge_both"])
        if r["judge_binding"] is not None:
            s["binding_n"] += 1
            s["binding"] += bool(r["judge_binding"])
        borders.setdefault(key, []).append(r["judge_background"])
    for key, values in borders.items():
        out[key]["background_median"] = round(float(np.median(values)), 4)
    return out


def _tile(image: np.ndarray, scale: int = 3) -> Image.Image:
    small = judge.to_world_size(image)
    return Image.fromarray(np.round(small * 255).astype(np.uint8)).resize(
        (world.SIZE * scale, world.SIZE * scale), Image.NEAREST)


def draw_grid(prompts, results, modes, seeds, path: Path) -> None:
    """A row per prompt: its text, then per mode its images, each with the judge's verdict under it."""
    tile, label_w, gap, text_h = world.SIZE * 3, 250, 4, 24
    cols = [(m, s) for m in modes for s in range(seeds)]
    width = label_w + len(cols) * (tile + gap)
    height = text_h + len(prompts) * (tile + text_h + gap)
    grid = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for c, (m, s) in enumerate(cols):
        draw.text((label_w + c * (tile + gap), 4), f"{m} #{s}", fill=(0, 0, 0))
    for r, (group, text) in enumerate(prompts):
        y = text_h + r * (tile + text_h + gap)
        draw.text((4, y + 4), f"[{group}]", fill=(90, 90, 90))
        draw.text((4, y + 20), text, fill=(0, 0, 0))
        for c, (m, s) in enumerate(cols):
            got = results.get((text, m))
            if got is None:
                continue
            images, verdicts = got
            x = label_w + c * (tile + gap)
            grid.paste(_tile(images[s]), (x, y))
            v = verdicts[s]
            mark = ("both" if v["judge_both"] else "miss") + (
                "" if v["judge_binding"] is None else (" bound" if v["judge_binding"] else " unbound"))
            draw.text((x, y + tile + 2), mark, fill=(0, 120, 0) if v["judge_both"] else (180, 0, 0))
    grid.save(path)


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    import_comfy(cpu=device.type == "cpu")  # also puts tests/ (the harness) on sys.path
    from harness.host import import_pack
    import_pack()
    import comfy.utils
    import nodes as comfy_nodes
    from . import model as toy_model
    comfy.utils.PROGRESS_BAR_ENABLED = False
    args.out.mkdir(parents=True, exist_ok=True)
    model, clip, vae = toy_model.load(args.weights, device)
    _, meta, _ = toy_model.read(args.weights)
    with torch.inference_mode():
        negative = comfy_nodes.CLIPTextEncode().encode(clip, "")[0]

    prompts = [("training", p) for p in world.TRAINING_PROMPTS] + held_out_sample()
    prompts = prompts[:args.prompts] if args.prompts else prompts
    rows, results, skipped = [], {}, []
    meta_out = {"weights": str(args.weights), "training": json.loads(meta["training"]), "steps": args.steps,
                "cfg": args.cfg, "sampler": "ddim + ddim_uniform", "seeds": f"batch of {args.seeds} from seed 0",
                "modes": MODES, "device": str(device), "torch": torch.__version__}

    def write():
        report = {"meta": meta_out, "summary": summarise(rows), "images": rows, "skipped": skipped}
        (args.out / "sanity.json").write_text(json.dumps(report, indent=1))
        return report

    for modes in PASSES:
        for group, text in prompts:
            for mode in modes:
                if time.time() >= args.deadline:
                    skipped.append([text, mode])
                    continue
                images, record, seconds = run_prompt(model, clip, vae, text, mode, args, negative)
                parsed = world.parse_prompt(text)
                arrays = images.numpy()
                found = [judge.find_objects(im) for im in arrays]
                verdicts = [judge.verdict(im, f, parsed) for f, im in zip(found, arrays)]
                on_subject = attention_on_subjects(record, found, parsed)
                for s, v in enumerate(verdicts):
                    losses = [float(st.loss[s]) for st in record.steps]
                    rows.append({"group": group, "prompt": text, "mode": mode, "image": s, **v,
                                 "attention_peak_on_subject": on_subject[s] if on_subject else None,
                                 "loss_first": losses[0] if losses else None,
                                 "loss_last": losses[-1] if losses else None,
                                 "refinement_iterations": sum(st.refinement_iterations[s] for st in record.steps),
                                 "gradient_passes_of_batch": record.gradient_passes,
                                 "seconds_of_batch": round(seconds, 2)})
                results[(text, mode)] = (images.numpy(), verdicts)
                print(f"[sanity] {mode:10s} {text!r}: " + " | ".join(v["judge_objects"] for v in verdicts) +
                      f" ({seconds:.1f} s)", flush=True)
                write()
            done_modes = [m for p in PASSES for m in p if any(k[1] == m for k in results)]
            draw_grid(prompts, results, done_modes, args.seeds, args.out / "sanity_grid.png")
    report = write()
    print("[sanity] summary " + json.dumps(report["summary"]), flush=True)
    return report


if __name__ == "__main__":
    main()
