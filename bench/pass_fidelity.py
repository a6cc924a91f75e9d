"""Issue 15's fidelity question asked of single passes: does the gradient pass a run replays (from the CUDA graph,
compiled with --compile-pass) give the eager pass's loss and gradient, within what eager passes differ by?

bench/gpu_checks.py answers it for whole SD1.5 runs; this asks it at the first A&E step of a real run, for either
model and any batch: the compiled SDXL pass's gradient there differs from the eager pass's by 47% of its norm in
every SDXL profile of docs/benchmarks.md (SD1.5 batch 4: 10%; the uncompiled graph: 0). Two eager passes at one latent
can be bitwise equal (docs/benchmarks.md, step 15), so they give no spread to compare with; the yardstick is the
exact result instead: the eager pass at the same latent and sigma on the same weights in float32 (a twin model).
The replayed pass must be no further from it than the eager passes are (within 25%, as gpu_checks' fourth check),
in loss and in gradient.

    python3 -m bench.pass_fidelity [--comfyui PATH] [--arch sd15|sdxl] [--batch N] [--compile-pass] [--out FILE]

On the GPU machine after `source bench/device_env.sh` (bench/README.md). --quick: the test harness's tiny models on
the CPU, to check the script (no CUDA graph there: the replayed pass is the eager one). Prints a table, writes the
JSON, exits 1 if the replayed pass is further off than the eager passes.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from harness import host, models

from . import ae_bench

STEPS = 50  # the run's steps; it stops at its first A&E step (ComfyRunner.at_first_step)
TOLERANCE = 1.25  # how much further from float32 than the eager passes the replayed pass may be


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
    """The distances between the passes, and the verdict: the replayed pass no further from `exact` (float32) than
    the further of the eager passes, times TOLERANCE, in loss and in gradient."""
    eager, replayed = passes["eager"], passes["replayed"]
    to_exact = {"eager": distance(eager[0], exact), "eager2": distance(eager[1], exact),
                "replayed": distance(replayed, exact)}
    bounds = {k: TOLERANCE * max(to_exact["eager"][k], to_exact["eager2"][k]) for k in ("loss", "grad_rel")}
    return {"eager_vs_eager": distance(eager[1], eager[0]), "replayed_vs_eager": distance(replayed, eager[0]),
            "to_float32": to_exact, "bounds": bounds,
            "passed": all(to_exact["replayed"][k] <= bounds[k] for k in bounds)}


def fidelity(arch: ae_bench.Arch, batch: int, device: torch.device, dtype: torch.dtype, compile_pass: bool) -> dict:
    """The passes of a `dtype` model of `arch` at its run's first A&E step against its float32 twin's (compare())."""
    plan = ae_bench.Plan(device=device, dtype=dtype, steps=STEPS, batches=(batch,), repeats=1, warmup_steps=0,
                         budget_s=1e9, cases=set(), compile_pass=compile_pass)
    model = models.make_model(arch.kind, seed=0, dtype=dtype, device=device)
    passes = ae_bench.ComfyRunner(plan, arch, model).at_first_step(batch, run_passes)
    twin = models.float32_twin(model, arch.kind, device)
    del model
    z32 = passes["z"].float()
    exact = ae_bench.ComfyRunner(plan, arch, twin).at_first_step(
        batch, lambda run, z, sigma: _cpu(run.gradient_pass.eager(z32, passes["sigma"])))
    return {"arch": arch.name, "batch": batch, "dtype": str(dtype).removeprefix("torch."),
            "compile_pass": compile_pass, "replayed": passes["was_replayed"], "compiled": passes["compiled"],
            "second_pass_s": passes["second_pass_s"], "pass_ms": passes["pass_ms"], **compare(passes, exact)}


def table(result: dict) -> str:
    to_exact = result["to_float32"]
    rows = [("eager, again", result["eager_vs_eager"], None), ("replayed", result["replayed_vs_eager"], None),
            ("eager", to_exact["eager"], "float32"), ("eager, again", to_exact["eager2"], "float32"),
            ("replayed", to_exact["replayed"], "float32")]
    lines = ["| pass | against | loss diff | gradient rel. diff | gradient cosine |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {name} | {against or 'eager'} | {d['loss']:.2e} | {d['grad_rel']:.2e} | {d['grad_cosine']:.6f} |"
              for name, d, against in rows]
    what = ("compiled and replayed" if result["compiled"] else "replayed") if result["replayed"] else "not replayed"
    lines.append(f"\n{result['arch']} batch {result['batch']} {result['dtype']}, the run's pass {what}: "
                 f"{'PASS' if result['passed'] else 'FAIL'} (bounds: loss {result['bounds']['loss']:.2e}, "
                 f"gradient {result['bounds']['grad_rel']:.2e}); the run's second pass took "
                 f"{result['second_pass_s']:.1f} s, its compilation and capture included; the pass "
                 f"{result['pass_ms']:.2f} ms")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfyui", default=None)
    parser.add_argument("--arch", default="sdxl", choices=["sd15", "sdxl"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--compile-pass", action="store_true",
                        help="the run compiles its pass (node input compile_pass)")
    parser.add_argument("--quick", action="store_true", help="tiny models on the CPU: checks the script itself")
    parser.add_argument("--out", default="bench/out/pass_fidelity.json")
    args = parser.parse_args()
    host.import_pack()
    host.import_comfy(host.find_comfyui(args.comfyui), cpu=args.quick)
    import comfy.model_management
    import comfy.utils
    comfy.utils.PROGRESS_BAR_ENABLED = False
    device = comfy.model_management.get_torch_device()
    result = fidelity(ae_bench.archs(args.quick)[args.arch], args.batch, device, torch.float16, args.compile_pass)
    result["device"] = torch.cuda.get_device_name() if device.type == "cuda" else device.type
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(table(result), flush=True)
    raise SystemExit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
