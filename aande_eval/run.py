"""The evaluation runner: every (prompt, seed, method) of the grid sampled, saved, scored and written as one JSON
line, then Table 1 and the CLIP figure. One process, or several under torchrun (one GPU each): the grid is dealt
by batches to the processes (grid.py), each appends to its own results file, and process 0 merges them once all
are done. A killed run started again with the same arguments continues where it stopped (results.py).

    python run_evaluation.py --comfyui ~/ComfyUI --ckpt sd-v1-4.ckpt --out eval/sd14 [--seeds 64]
    torchrun --nproc-per-node 4 run_evaluation.py --comfyui ~/ComfyUI --ckpt sd-v1-4.ckpt --out eval/sd14
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from .comfy_library import import_comfyui
from .grid import METHODS, make_batches, share
from .prompts import PAPER_PROMPTS, load_prompts
from .results import append_lines, check_run_config, rank_file, read_lines, write_merged


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="run_evaluation.py", description=__doc__.split("\n")[0])
    p.add_argument("--comfyui", required=True, help="the ComfyUI folder (the one holding main.py)")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--ckpt", help="a checkpoint file (SD1.x/SD2.x/SDXL), loaded as CheckpointLoaderSimple does")
    model.add_argument("--model-loader", help="module:function(weights, device) returning (MODEL, CLIP, VAE)")
    p.add_argument("--weights", help="the weights file for --model-loader")
    p.add_argument("--out", required=True, type=Path, help="output folder (resumable)")
    p.add_argument("--prompts", type=Path, default=PAPER_PROMPTS, help="{category: [prompt, ...]} JSON (default: "
                   "the paper's 276 prompts)")
    p.add_argument("--categories", help="comma-separated categories to run (default: all)")
    p.add_argument("--prompts-per-category", type=int, help="only the first N prompts of each category")
    p.add_argument("--seeds", type=int, default=64, help="seeds per prompt and method (paper: 64)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--methods", default=",".join(METHODS), help="standard, ae or both")
    p.add_argument("--batch", type=int, default=4, help="images per sampling batch (results do not depend on the "
                   "number of processes; they depend on the batch size only through floating-point rounding)")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--cfg", type=float, default=7.5)
    p.add_argument("--sampler", default="ddim")
    p.add_argument("--scheduler", default="ddim_uniform")
    p.add_argument("--ae", action="append", default=[], metavar="INPUT=VALUE",
                   help="an A&E input of the nodes, e.g. --ae scale_factor=10 (default: the paper's)")
    p.add_argument("--metrics", default="clip,blip", help="clip, blip, both or none")
    p.add_argument("--clip-model", type=Path, help="folder of openai/clip-vit-base-patch16 (HF format)")
    p.add_argument("--blip-model", type=Path, help="folder of Salesforce/blip-image-captioning-base (HF format)")
    p.add_argument("--metric", action="append", default=[], metavar="MODULE:FACTORY", help="another image metric")
    p.add_argument("--cpu", action="store_true", help="run on the CPU")
    return p.parse_args(argv)


def ae_settings(overrides: list[str]):
    """The nodes' A&E inputs at their defaults, with --ae INPUT=VALUE overrides parsed by each input's type."""
    from ..nodes.declarations.inputs import ae_inputs, settings_from
    specs = ae_inputs()
    kw = {name: spec[1]["default"] for name, spec in specs.items()}
    for item in overrides:
        name, sep, text = item.partition("=")
        if not sep or name not in specs:
            raise ValueError(f"--ae takes INPUT=VALUE with INPUT one of {', '.join(specs)}; got {item!r}")
        kind = specs[name][0]
        kw[name] = {"INT": int, "FLOAT": float, "BOOLEAN": lambda t: t.lower() in ("1", "true", "on", "yes")}.get(
            kind, str)(text) if isinstance(kind, str) else text
    return kw, settings_from(kw)


class Distributed:
    """This process's rank among torchrun's (one process: rank 0 of 1), and a barrier."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if self.world > 1:
            import torch.distributed as dist
            # gloo: the processes only meet at the end; no tensors travel between GPUs
            dist.init_process_group("gloo", timeout=datetime.timedelta(hours=48))

    def barrier(self):
        if self.world > 1:
            import torch.distributed as dist
            dist.barrier()

    def close(self):
        if self.world > 1:
            import torch.distributed as dist
            dist.destroy_process_group()


def main(argv=None):
    args = parse_args(argv)
    ddp = Distributed()
    if ddp.world > 1 and not args.cpu and "CUDA_VISIBLE_DEVICES" not in os.environ:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(ddp.local_rank)  # one GPU per process, before ComfyUI picks one
    import_comfyui(args.comfyui, cpu=args.cpu)
    from .. import nodes  # noqa: F401  (the pack's nodes: Select Subject Tokens, the engine)
    import comfy.model_management
    from . import chart, metrics, table
    from .sampling import Sampler, SamplingSettings
    device = comfy.model_management.get_torch_device()

    prompts = load_prompts(args.prompts, args.categories.split(",") if args.categories else None,
                           args.prompts_per_category)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    methods = [m for m in args.methods.split(",") if m]
    batches = make_batches(prompts, seeds, methods, args.batch)
    ae_kw, ae = ae_settings(args.ae)
    sampling = SamplingSettings(args.size, args.steps, args.cfg, args.sampler, args.scheduler)
    metric_names = [m for m in args.metrics.split(",") if m and m != "none"]
    config = {"model": args.ckpt or f"{args.model_loader} {args.weights}", "prompts": str(args.prompts),
              "categories": args.categories, "prompts_per_category": args.prompts_per_category, "seeds": seeds,
              "methods": methods, "batch": args.batch, "sampling": vars(sampling), "ae": ae_kw,
              "metrics": metric_names + args.metric}
    args.out.mkdir(parents=True, exist_ok=True)
    if ddp.rank == 0:
        check_run_config(args.out, config)
    ddp.barrier()
    check_run_config(args.out, config)

    mine = share(batches, ddp.rank, ddp.world)
    done = read_lines(args.out)
    todo = [b for b in mine if not all(k in done for k in b.keys())]
    tag = f"[eval {ddp.rank}/{ddp.world}]"
    print(f"{tag} {len(batches)} batches in the grid, {len(mine)} here, {len(mine) - len(todo)} already done; "
          f"device {device}", flush=True)
    if todo:
        model, clip, vae = load_model(args, device)
        sampler = Sampler(model, clip, vae, sampling, ae)
        scorers = metrics.paper_metrics(metric_names, args.clip_model, args.blip_model, device) + \
            [metrics.plugin_metric(spec) for spec in args.metric]
        run_batches(todo, sampler, scorers, args.out, ddp.rank, config, tag)
    ddp.barrier()
    if ddp.rank == 0:
        t0 = time.perf_counter()
        found = read_lines(args.out)
        missing = [k for b in batches for k in b.keys() if k not in found]
        if missing:
            raise SystemExit(f"{tag} {len(missing)} images have no result (e.g. {missing[0]}); run again to finish")
        lines = [found[k] for b in batches for k in b.keys()]
        merged = write_merged(args.out, lines)
        summary = table.summarise(lines)
        written = table.write_tables(args.out, summary, lines)
        if "clip" in metric_names:
            chart.draw(summary, args.out / "clip_figure.png")
            written.append(args.out / "clip_figure.png")
        print(f"{tag} merged {len(lines)} images into {merged} and wrote "
              f"{', '.join(p.name for p in written)} in {time.perf_counter() - t0:.1f} s", flush=True)
        print(table.markdown(summary, lines), flush=True)
    ddp.close()


def load_model(args, device):
    from ..nodes import compat
    if args.ckpt:
        return compat.load_checkpoint(args.ckpt)
    module, _, function = args.model_loader.partition(":")
    return getattr(importlib.import_module(module), function)(args.weights, device)


def run_batches(batches, sampler, scorers, out: Path, rank: int, config: dict, tag: str):
    """Sample and score batch after batch; a writer thread saves each batch's PNGs and then its lines while the
    next batch samples (PNG compression costs about 0.1 s per 512x512 image on the CPU, which would otherwise
    stall the GPU), so a line is still never written before its image."""
    path = rank_file(out, rank)
    total = sum(len(b.seeds) for b in batches)
    made, started = 0, time.perf_counter()
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending = None
        for batch in batches:
            images, record = sampler(batch)
            per_image = [dict() for _ in batch.seeds]
            for scorer in scorers:
                for values, found in zip(per_image, scorer.measure(images, batch.prompt)):
                    values.update(found)
            if pending is not None:
                pending.result()  # a failed write stops the run here
            pending = writer.submit(write_batch, out, path, batch, images, record, per_image, config)
            made += len(batch.seeds)
            elapsed = time.perf_counter() - started
            rate = made / elapsed * 60
            eta = (total - made) / (made / elapsed)
            print(f"{tag} {made}/{total} images, {rate:.1f} images/min, ETA {eta / 60:.1f} min", flush=True)
        if pending is not None:
            pending.result()


def write_batch(out: Path, path: Path, batch, images, record, per_image: list[dict], config: dict) -> None:
    """The batch's images as PNG files, then its lines (see results.py)."""
    from PIL import Image
    lines = []
    for i, seed in enumerate(batch.seeds):
        rel = Path("images") / batch.prompt.category / batch.prompt.text.replace(" ", "_") / f"{batch.method}_{seed:04d}.png"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        tmp = (out / rel).with_suffix(".tmp.png")
        Image.fromarray((images[i].numpy() * 255).round().astype("uint8")).save(tmp)
        tmp.replace(out / rel)
        found = dict(per_image[i])
        caption = found.pop("caption", None)
        if record is not None:
            found["ae_loss_first"] = float(record.steps[0].loss[i]) if record.steps else None
            found["ae_loss_last"] = float(record.steps[-1].loss[i]) if record.steps else None
        lines.append({"prompt": batch.prompt.text, "category": batch.prompt.category,
                      "subjects": batch.prompt.subjects, "seed": seed, "method": batch.method, "image": str(rel),
                      "settings": {"sampling": config["sampling"], "ae": config["ae"] if batch.method == "ae"
                                   else None}, "metrics": found, "caption": caption})
    append_lines(path, lines)


if __name__ == "__main__":
    sys.exit(main())
