"""CUDA correctness checks of the A&E KSampler: an SD1.5-size random-weight UNet at 512x512 in fp16 and bf16 gives
finite output; fp16 agrees with fp32 on the first A&E losses; the gradient pass replayed from a CUDA graph gives
the eager pass's result and frees its memory after the run; a non-finite gradient skips that sample's update with
a warning; and, in fp32 at SD1.5's 64x64 latent (maps at latent/4, 16x16), the A&E KSampler matches diffusers'
A&E pipeline on twin weights, with max_iter_to_alter 25 (the paper) and 15 (refinement at step 20 beyond it).
The graphed runs keep their GroupNorms channels-last, compiled (unless AANDE_NHWC_NORM=0), so the graph against the
eager pass is also the NHWC GroupNorm against PyTorch's; with --compile-pass they compile the whole pass instead
(the node input compile_pass), and the check is the compiled pass against the eager one. --graph-only stops after
the first four checks. The fourth asks the second's question on a firmer footing: two eager runs differ by little
(a pass at one latent was bitwise repeatable in docs/benchmarks.md step 15), so any change to the pass's arithmetic
(fusion, other kernels) moves a run more than that, even one nearer the exact result; so against an fp32 run on the
same weights, the graphed run must be no further off than the eager runs are.
Prints a table; exits 1 if a check fails.

python3 -m bench.gpu_checks [--comfyui PATH] [--quick] [--graph-only] [--compile-pass]
"""
from __future__ import annotations

import argparse
import logging
import os
import time

import torch
from harness import diffusers_twin, host, models, parity

from . import ae_bench

PARITY_TOL = 1e-4  # relative L2 of the latents, absolute on the losses


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--comfyui", default=None)
    parser.add_argument("--quick", action="store_true", help="tiny models on the CPU: checks the script itself")
    parser.add_argument("--graph-only", action="store_true", help="only the fp16 and CUDA-graph checks")
    parser.add_argument("--compile-pass", action="store_true", help="A&E runs with the node input compile_pass on: "
                        "the CUDA-graph runs compile their pass, so the graph against the eager pass is also the "
                        "compiled pass against the eager one")
    args = parser.parse_args()
    diffusers, missing = host.import_diffusers()
    host.import_pack()
    host.import_comfy(host.find_comfyui(args.comfyui), cpu=args.quick)
    import comfy.model_management
    import comfy.utils

    from aande_pack.nodes.engine import gradient_pass, graphed_pass
    from harness.faults import nan_in_first_gradient
    comfy.utils.PROGRESS_BAR_ENABLED = False
    device = comfy.model_management.get_torch_device()
    arch = ae_bench.archs(args.quick)["sd15"]
    plan = ae_bench.Plan(device=device, dtype=torch.float16, steps=20, batches=(2,), repeats=1, warmup_steps=0,
                         budget_s=1e9, cases=set(), compile_pass=args.compile_pass)
    rows, ok = [], True

    def run(model, steps=20, batch=2, **overrides):
        runner = ae_bench.ComfyRunner(plan, arch, model)
        t0 = time.perf_counter()
        out, record = runner.ae(batch, steps, overrides)
        return out, record, time.perf_counter() - t0

    def check(name, passed, detail):
        nonlocal ok
        ok &= bool(passed)
        rows.append((name, "PASS" if passed else "FAIL", detail))
        print("| " + " | ".join(rows[-1]) + " |", flush=True)  # each row as it comes: a run cut short keeps them

    fp16 = models.make_model(arch.kind, seed=0, dtype=torch.float16, device=device)
    out, record, secs = run(fp16)
    losses = torch.stack([s.loss for s in record.steps])
    check("fp16 512x512 batch 2, 20 steps", torch.isfinite(out).all() and torch.isfinite(losses).all(),
          f"{secs:.1f} s, loss {losses[0].tolist()} -> {losses[-1].tolist()}, "
          f"refinement iterations {sum(sum(s.refinement_iterations) for s in record.steps)}")

    if device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated(device)
        graphed, rec_g, secs_g = run(fp16)
        after = torch.cuda.memory_allocated(device)
        os.environ[graphed_pass.ENV_SWITCH] = "0"
        try:
            eager, rec_e, secs_e = run(fp16)
            eager2, rec_e2, _ = run(fp16)
            # the reference of the fourth check: the eager pass in fp32
            exact, rec_x, _ = run(models.float32_twin(fp16, arch.kind, device))
        finally:
            del os.environ[graphed_pass.ENV_SWITCH]

        def diffs(a, rec_a, b, rec_b):
            """(latent relative L2 difference, largest per-step loss difference, same refinement iterations)"""
            iterations = [[s.refinement_iterations for s in rec.steps] for rec in (rec_a, rec_b)]
            return (float((a - b).norm() / b.norm()),
                    max(float((x.loss - y.loss).abs().max()) for x, y in zip(rec_a.steps, rec_b.steps)),
                    iterations[0] == iterations[1])

        graph_vs_eager, eager_vs_eager = diffs(graphed, rec_g, eager, rec_e), diffs(eager2, rec_e2, eager, rec_e)
        # the eager pass itself is not bitwise repeatable (cuDNN's attention backward), and random weights amplify
        # differences over 20 steps with refinement: the graph must stay within that run-to-run spread
        close = graph_vs_eager[0] <= max(4 * eager_vs_eager[0], 1e-5) and graph_vs_eager[1] <= max(
            4 * eager_vs_eager[1], 1e-5)
        compiled, what = True, ""
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        if args.compile_pass:  # the graphed run compiled its whole pass: dynamo built its graph
            compiled, what = graphs > 0, f", the pass compiled ({graphs} compiled graph)"
        elif gradient_pass.nhwc_norm_enabled():  # eager runs are not channels-last: only
            # graphed runs swap; compiled in the first graphed run's first pass, so dynamo must have built its graphs
            compiled, what = graphs > 0, f", NHWC GroupNorm ({graphs} compiled graphs)"
        check(f"CUDA-graph gradient pass = eager pass (fp16, batch 2, 20 steps, default refinement{what})",
              rec_g.graph_replays == rec_g.gradient_passes - 1 and rec_e.graph_replays == 0 and close and compiled,
              f"{rec_g.graph_replays} of {rec_g.gradient_passes} passes replayed; graph vs eager: latent rel. diff "
              f"{graph_vs_eager[0]:.1e}, max loss diff {graph_vs_eager[1]:.1e}, same refinement {graph_vs_eager[2]}; "
              f"eager vs eager: {eager_vs_eager[0]:.1e}, {eager_vs_eager[1]:.1e}, {eager_vs_eager[2]}; "
              f"{secs_g:.2f} s against {secs_e:.2f} s eager")
        check("the graph's memory is freed after the run", after - before < 2 ** 20,
              f"allocated before {before / 2 ** 20:.1f} MiB, after {after / 2 ** 20:.1f} MiB")
        off = {name: diffs(out, rec, exact, rec_x) for name, out, rec in
               (("graph", graphed, rec_g), ("eager", eager, rec_e), ("eager2", eager2, rec_e2))}
        worst_eager = [max(off["eager"][i], off["eager2"][i]) for i in (0, 1)]
        check("CUDA-graph run no further from an fp32 run than the eager runs (same weights, 20 steps)",
              all(off["graph"][i] <= 1.25 * worst_eager[i] for i in (0, 1)),
              "latent rel. diff / max loss diff to fp32: graph {:.1e} / {:.1e}, eager {:.1e} / {:.1e} and {:.1e} / "
              "{:.1e}; same refinement as fp32: graph {}, eager {}".format(
                  *off["graph"][:2], *off["eager"][:2], *off["eager2"][:2], off["graph"][2], off["eager"][2]))
    if args.graph_only:
        raise SystemExit(report(rows, ok, device))

    fp32 = models.float32_twin(fp16, arch.kind, device)
    _, rec32, _ = run(fp32, thresholds="")
    _, rec16, _ = run(fp16, thresholds="")
    diff = max(float((a.loss - b.loss).abs().max()) for a, b in zip(rec16.steps[:3], rec32.steps[:3]))
    check("fp16 vs fp32 losses, first 3 A&E steps", diff < 2e-2, f"max abs diff {diff:.2e}")
    del fp32

    bf16 = models.make_model(arch.kind, seed=0, dtype=torch.bfloat16, device=device)
    out, record, secs = run(bf16, thresholds="")
    check("bf16 512x512 batch 2, 20 steps", torch.isfinite(out).all(), f"{secs:.1f} s")
    del bf16

    warnings = []
    handler = logging.Handler()
    handler.emit = lambda rec: warnings.append(rec.getMessage())
    logging.getLogger("attend_and_excite").addHandler(handler)
    try:
        with nan_in_first_gradient(sample=1):
            out, record, _ = run(fp16, thresholds="")
    finally:
        logging.getLogger("attend_and_excite").removeHandler(handler)
    check("NaN gradient in sample 1 at step 0 is skipped", torch.isfinite(out).all() and record.steps[0].skipped ==
          (False, True) and any("non-finite gradient" in w for w in warnings), f"warnings: {warnings[:1]}")
    del fp16

    if diffusers is None:
        check("parity with diffusers' A&E pipeline", False, f"diffusers does not import: {missing}")
    else:
        parity_checks(check, device, args.quick)
    raise SystemExit(report(rows, ok, device))


def report(rows, ok: bool, device) -> int:
    """Print the table; the exit status (1 if a check failed)."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (--quick)"
    print(f"\nGPU checks on {name}, torch {torch.__version__}\n\n| check | result | detail |\n| --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0 if ok else 1


def parity_checks(check, device, quick: bool):
    """fp32 parity with diffusers' A&E pipeline at SD1.5's latent size, for the tiny SD1 twin of the CPU test and
    the SD1.5-size twin; TF32 off on both sides (it would round the matrix products to 10 bits)."""
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    latent = 16 if quick else 64
    # the tiny twin of the CPU test at SD1.5's latent size, both schedules; the SD1.5-size twin with refinement
    # beyond max_iter_to_alter
    for kind, sharpen, schedules in (("sd1", 2.0, (25, 15)), ("sd15-full" if not quick else "sd1", None, (15,))):
        unet = diffusers_twin.diffusers_unet(kind, seed=0, sharpen=sharpen, device=device)
        model = diffusers_twin.comfy_twin(unet, kind, device=device)
        for max_iter in schedules:
            t0 = time.perf_counter()
            found = parity.compare(unet, model, *parity.inputs(latent, device=device), "latent/4", latent // 4,
                                   max_iter)
            passed = not found["problems"] and max(found["loss_diff"], found["end_rel"], found["step_rel"]) < PARITY_TOL
            check(f"parity with diffusers, {kind} twin, {latent}x{latent} latent, maps latent/4, fp32, "
                  f"max_iter_to_alter {max_iter}", passed,
                  f"max loss diff {found['loss_diff']:.1e}, z after step {max_iter - 1} rel. {found['end_rel']:.1e}, "
                  f"starting latents max rel. {found['step_rel']:.1e}, step-0 refinement {found['step0_iterations']}, "
                  f"beyond max_iter {found['beyond_iterations']}, {time.perf_counter() - t0:.0f} s"
                  + (f"; problems: {found['problems']}" if found["problems"] else ""))
        del unet, model
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True


if __name__ == "__main__":
    main()
