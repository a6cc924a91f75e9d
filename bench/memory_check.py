"""SDXL A&E at 1024x1024 on an 8 GB card: the memory-saving gradient pass (nodes/engine/recompute.py) with the
process limited to 8 GiB (torch.cuda.set_per_process_memory_fraction), against the normal pass without a limit.

Two runs of the A&E KSampler's sampling (50 DDIM steps, the paper's A&E settings, random SDXL-size weights, fp16):
the memory-saving pass under the 8 GiB limit, then the normal pass, eager, without it. Reports the peak allocated
memory and time of each, and their difference (two eager runs differ too: cuDNN's backward is not bitwise
repeatable; bench/gpu_checks.py measures that spread). Writes memory_check.json.

    python3 -m bench.memory_check --comfyui .device/comfyui --out $OUT
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from harness import host, models

from . import ae_bench

LIMIT_GIB = 8.0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--comfyui")
    p.add_argument("--out", type=Path, default=Path("bench/out"))
    p.add_argument("--steps", type=int, default=50)
    args = p.parse_args()
    host.import_pack()
    host.import_comfy(host.find_comfyui(args.comfyui), cpu=False)
    import comfy.utils

    from aande_pack.nodes.engine import graphed_pass
    comfy.utils.PROGRESS_BAR_ENABLED = False
    dev = torch.device("cuda")
    plan = ae_bench.Plan(device=dev, dtype=torch.float16, steps=args.steps, batches=(1,), repeats=1, warmup_steps=0,
                         budget_s=1e9, cases=set())
    arch = ae_bench.archs(False)["sdxl"]
    runner = ae_bench.ComfyRunner(plan, arch, models.make_model(arch.kind, dtype=torch.float16, device=dev))
    out: dict = {"device": torch.cuda.get_device_name(), "limit_gib": LIMIT_GIB, "steps": args.steps}

    def run(name, **overrides):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        latent, record = runner.ae(1, args.steps, overrides)
        torch.cuda.synchronize()
        out[name] = {"seconds": time.perf_counter() - t0, "peak_gib": torch.cuda.max_memory_allocated() / 2 ** 30,
                     "gradient_passes": record.gradient_passes, "graph_replays": record.graph_replays,
                     "finite": bool(torch.isfinite(latent).all())}
        print(name, out[name], flush=True)
        return latent

    total = torch.cuda.get_device_properties(dev).total_memory
    index = torch.cuda.current_device()
    torch.cuda.set_per_process_memory_fraction(LIMIT_GIB * 2 ** 30 / total, index)
    runner.ae(1, 2, {"memory_saving": "on"})  # warm-up, within the limit
    saving = run("memory_saving_8gib", memory_saving="on")
    torch.cuda.set_per_process_memory_fraction(1.0, index)
    os.environ[graphed_pass.ENV_SWITCH] = "0"
    try:
        eager = run("normal_eager", memory_saving="off")
    finally:
        del os.environ[graphed_pass.ENV_SWITCH]
    out["memory_saving_vs_eager_rel"] = float((saving - eager).norm() / eager.norm())
    out["target_met"] = out["memory_saving_8gib"]["peak_gib"] <= 7.5 and out["memory_saving_8gib"]["finite"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory_check.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1), flush=True)


if __name__ == "__main__":
    main()
