"""Issue 15's fidelity question asked of single passes: does the gradient pass a run replays (from the CUDA graph,
compiled with --compile-pass) give the eager pass's loss and gradient, within what eager passes differ by?

bench/gpu_checks.py answers it for whole SD1.5 runs; this asks it at the first A&E step of real runs, for either
model and any batch: the compiled SDXL pass's gradient there differs from the eager pass's by 47% of its norm in
every SDXL profile of docs/benchmarks.md (SD1.5 batch 4: 10%; the uncompiled graph: 0). Two eager passes at one latent
can be bitwise equal (docs/benchmarks.md, step 15), so they give no spread to compare with; the yardstick is the
exact result instead: the eager pass at the same latent and sigma on the same weights in float32 (a twin model).
The replayed pass must be no further from it than the eager passes are (within 25%, as gpu_checks' fourth check),
in loss and in gradient, on average over several latents (the first A&E step of runs with seeds 0, 1, ...): at one
latent the loss's rounding error is one draw, and a pass that only sums in another order came out 1.6x the eager
pass's there (docs/benchmarks.md, step 23), so a verdict on one latent says as much about the draw as the pass.

    python3 -m bench.pass_fidelity [--comfyui PATH] [--arch sd15|sdxl] [--batch N] [--latents N] [--compile-pass]
                                   [--out FILE]

On the GPU machine after `source bench/device_env.sh` (bench/README.md). --quick: the test harness's tiny models on
the CPU, to check the script (no CUDA graph there: the replayed pass is the eager one). Prints a table, writes the
JSON, exits 1 if the replayed pass is further off than the eager passes.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from harness import host, models

from . import ae_bench

STEPS = 50  # the run's steps; it stops at its first A&E step (ComfyRunner.at_first_step)
TOLERANCE = 1.25  # how much further from float32 than the eager passes the replayed pass may be, on average
LATENTS = 4  # the runs (seeds 0, 1, ...) whose first A&E step's latent the passes are compared at
KINDS = ("loss", "grad_rel")  # the distances the verdict reads


def _cpu(result):
    """The loss and gradient of a PassResult, float32 on the CPU (kept past the pass: a replay overwrites its own)."""
    return SimpleNamespace(loss=result.loss.detach().float().cpu(), grad=result.grad.detach().float().cpu())


def run_passes(run, z, sigma) -> dict:
    """Two eager passes, then the run's own first two passes: eager, then the one its CUDA graph replays; then the
    time of that pass (median of 10, as bench.ae_bench times it: copy in, replay, copy out)."""
    gradient_pass = run.gradient_pass
    eager = [_cpu(gradient_pass.eager(z, sigma)) for _ in range(2)]
    gradient_pass(z, sigma)
    started = time.perf_counter()
    replayed = _cpu(gradient_pass(z, sigma))
    passes = {"z": z.detach().clone(), "sigma": sigma.detach().clone(), "eager": eager, "replayed": replayed,
              "was_replayed": gradient_pass.replays == 1, "compiled": gradient_pass.compiled,
              "second_pass_s": time.perf_counter() - started}
    passes["pass_ms"] = ae_bench.median_ms(lambda: gradient_pass(z, sigma), z.device, repeats=10)
    return passes


def distance(got, reference) -> dict:
    """Largest loss difference, the gradient's relative L2 difference and the gradients' cosine."""
    g, r = got.grad.flatten(), reference.grad.flatten()
    return {"loss": float((got.loss - reference.loss).abs().max()),
            "grad_rel": float((g - r).norm() / r.norm().clamp_min(1e-30)),
            "grad_cosine": float(torch.nn.functional.cosine_similarity(g, r, dim=0))}


def compare(passes: dict, exact) -> dict:
    """The distances between the passes at one latent, `exact` the float32 pass's result there."""
    eager, replayed = passes["eager"], passes["replayed"]
    return {"eager_vs_eager": distance(eager[1], eager[0]), "replayed_vs_eager": distance(replayed, eager[0]),
            "to_float32": {"eager": distance(eager[0], exact), "eager2": distance(eager[1], exact),
                           "replayed": distance(replayed, exact)}}


def verdict(latents: list[dict]) -> dict:
    """Over the latents' compare(): the mean distance to float32 of the replayed pass and of the further eager pass
    at each latent, in loss and gradient; passed if the replayed pass's is at most TOLERANCE times the eager's."""
    def mean(pass_distance):
        return {k: statistics.fmean(pass_distance(c["to_float32"])[k] for c in latents) for k in KINDS}
    eager = mean(lambda d: {k: max(d["eager"][k], d["eager2"][k]) for k in KINDS})
    replayed = mean(lambda d: d["replayed"])
    bounds = {k: TOLERANCE * eager[k] for k in KINDS}
    return {"mean_to_float32": {"eager": eager, "replayed": replayed}, "bounds": bounds,
            "passed": all(replayed[k] <= bounds[k] for k in KINDS)}


def fidelity(arch: ae_bench.Arch, batch: int, device: torch.device, dtype: torch.dtype, compile_pass: bool,
             latents: int = LATENTS) -> dict:
    """The passes of a `dtype` model of `arch` at the first A&E step of runs with seeds 0 to `latents` - 1 against
    its float32 twin's at the same latents (compare(), verdict())."""
    plan = ae_bench.Plan(device=device, dtype=dtype, steps=STEPS, batches=(batch,), repeats=1, warmup_steps=0,
                         budget_s=1e9, cases=set(), compile_pass=compile_pass)
    plans = [dataclasses.replace(plan, seed=seed) for seed in range(latents)]
    model = models.make_model(arch.kind, seed=0, dtype=dtype, device=device)
    passes = [ae_bench.ComfyRunner(p, arch, model).at_first_step(batch, run_passes) for p in plans]
    twin = models.float32_twin(model, arch.kind, device)
    del model

    def exact(p, at):
        return ae_bench.ComfyRunner(p, arch, twin).at_first_step(
            batch, lambda run, z, sigma: _cpu(run.gradient_pass.eager(at["z"].float(), at["sigma"])))

    compared = [{"seed": p.seed, "replayed": at["was_replayed"], "compiled": at["compiled"],
                 "second_pass_s": at["second_pass_s"], "pass_ms": at["pass_ms"], **compare(at, exact(p, at))}
                for p, at in zip(plans, passes)]
    return {"arch": arch.name, "batch": batch, "dtype": str(dtype).removeprefix("torch."),
            "compile_pass": compile_pass, "replayed": all(c["replayed"] for c in compared),
            "compiled": all(c["compiled"] for c in compared),
            "pass_ms": statistics.median(c["pass_ms"] for c in compared), "latents": compared, **verdict(compared)}


def table(result: dict) -> str:
    lines = ["| seed | pass | against | loss diff | gradient rel. diff | gradient cosine |",
             "| --- | --- | --- | --- | --- | --- |"]
    for c in result["latents"]:
        to_exact = c["to_float32"]
        rows = [("eager, again", c["eager_vs_eager"], "eager"), ("replayed", c["replayed_vs_eager"], "eager"),
                ("eager", to_exact["eager"], "float32"), ("eager, again", to_exact["eager2"], "float32"),
                ("replayed", to_exact["replayed"], "float32")]
        lines += [f"| {c['seed']} | {name} | {against} | {d['loss']:.2e} | {d['grad_rel']:.2e} | "
                  f"{d['grad_cosine']:.6f} |" for name, d, against in rows]
    mean, bounds = result["mean_to_float32"], result["bounds"]
    what = ("compiled and replayed" if result["compiled"] else "replayed") if result["replayed"] else "not replayed"
    first = result["latents"][0]
    lines.append(f"\n{result['arch']} batch {result['batch']} {result['dtype']}, the runs' pass {what}, mean over "
                 f"{len(result['latents'])} latents to float32: loss {mean['replayed']['loss']:.2e} (eager "
                 f"{mean['eager']['loss']:.2e}, bound {bounds['loss']:.2e}), gradient "
                 f"{mean['replayed']['grad_rel']:.2e} (eager {mean['eager']['grad_rel']:.2e}, bound "
                 f"{bounds['grad_rel']:.2e}): {'PASS' if result['passed'] else 'FAIL'}; the first run's second pass "
                 f"took {first['second_pass_s']:.1f} s, its compilation and capture included; the pass "
                 f"{result['pass_ms']:.2f} ms (median over the runs)")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfyui", default=None)
    parser.add_argument("--arch", default="sdxl", choices=["sd15", "sdxl"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--latents", type=int, default=LATENTS,
                        help="runs (seeds 0, 1, ...) whose first A&E step's latent the passes are compared at")
    parser.add_argument("--compile-pass", action="store_true",
                        help="the run compiles its pass (node input compile_pass)")
    parser.add_argument("--quick", action="store_true", help="tiny models on the CPU: checks the script itself")
    parser.add_argument("--out", default="bench/out/pass_fidelity.json")
    args = parser.parse_args()
    if args.latents < 1:
        parser.error(f"--latents must be at least 1, not {args.latents}")
    host.import_pack()
    host.import_comfy(host.find_comfyui(args.comfyui), cpu=args.quick)
    import comfy.model_management
    import comfy.utils
    comfy.utils.PROGRESS_BAR_ENABLED = False
    device = comfy.model_management.get_torch_device()
    result = fidelity(ae_bench.archs(args.quick)[args.arch], args.batch, device, torch.float16, args.compile_pass,
                      args.latents)
    result["device"] = torch.cuda.get_device_name() if device.type == "cuda" else device.type
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(table(result), flush=True)
    raise SystemExit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
