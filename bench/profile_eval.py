"""Where the time of an A&E step goes (the optimisation log in docs/benchmarks.md): one gradient pass eager, under
the profiler (GPU busy time against wall time) and replayed from the CUDA graph; and whole A&E runs split into
gradient passes, the rest of the A&E update and the CFG forwards, against plain steps. Everything is timed
through the run's observer seam (nodes/engine/observer.py) and the gradient pass's own interface.

    python3 -m bench.profile_eval --comfyui .device/comfyui [--arch sdxl] [--batch 4] [--compile-pass]
        [--refinement] --out $OUT/p.json

With --compile-pass the run compiles its pass (the node input compile_pass) and the CUDA graph replays the compiled
program. The replayed pass's kernels are summed by kind (`kernel_split`, JSON `graph_kernels`), and the copies ATen
makes inside the compiled program's calls to it by their caller (`copy_sources`, JSON `compiled_copies`).
--refinement adds where a run with the default refinement spends its time beyond its replayed passes
(`refinement_split`, JSON `refinement`): every pass of the run timed by CUDA events, without a synchronisation the run
does not make itself, and the first step's pass replayed 60 times as the refinement loop replays it.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from harness import host, models

from . import ae_bench


def cuda_ms(fn, repeats=10, warmup=3):
    return ae_bench.median_ms(fn, torch.device("cuda"), warmup, repeats)


def profile_pass(run, z, sigma, out: dict) -> None:
    """The first A&E step's gradient pass: eager time, weight-alias swap, a profile of 3 eager passes, and the
    replayed pass (time, difference to the eager result, profile)."""
    from torch.profiler import ProfilerActivity, profile
    gradient_pass = run.gradient_pass
    out["eager_ms"] = cuda_ms(lambda: gradient_pass.eager(z, sigma))
    t_swap = time.perf_counter()
    for _ in range(20):
        with gradient_pass.weights.swapped():
            pass
    out["alias_swap_ms"] = 1000 * (time.perf_counter() - t_swap) / 20
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            gradient_pass.eager(z, sigma)
        torch.cuda.synchronize()
    events = prof.key_averages()
    kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    out["gpu_kernel_ms_per_eval"] = sum(e.self_device_time_total for e in kernels) / 1000 / 3
    out["kernel_launches_per_eval"] = sum(e.count for e in events if e.key.startswith("cudaLaunchKernel")
                                          or e.key.startswith("cuLaunchKernel")) / 3
    out["top_gpu"] = events.table(sort_by="self_device_time_total", row_limit=15)
    out["top_cpu"] = events.table(sort_by="cpu_time_total", row_limit=12)
    eager = gradient_pass.eager(z, sigma)
    if gradient_pass.eager_reason is None:
        out["graph_ms"] = cuda_ms(lambda: gradient_pass(z, sigma))
        res = gradient_pass(z, sigma)
        out["graph_loss_diff"] = float((res.loss - eager.loss).abs().max())
        out["graph_grad_rel"] = float((res.grad - eager.grad).norm() / eager.grad.norm())
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                gradient_pass(z, sigma)
            torch.cuda.synchronize()
        replayed = prof.key_averages()
        out["graph_top_gpu"] = replayed.table(sort_by="self_device_time_total", row_limit=8)
        out["graph_compiled"] = gradient_pass.compiled
        out["graph_kernels"] = kernel_split(replayed, passes=3)
        if gradient_pass.compiled:  # the compiled program run directly, where the profiler sees its ATen calls
            captured = gradient_pass._graph.captured
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for _ in range(3):
                    captured(z, sigma)
                torch.cuda.synchronize()
            out["compiled_copies"] = copy_sources(prof.events(), passes=3)


def pass_events():
    """A RunObserver that brackets each phase of a run in CUDA events, adding no synchronisation: GPU time from a
    phase's first launch to its last kernel's end, with whatever idle time the CPU's launching leaves inside it.
    `summary()` after the run."""
    from aande_pack.nodes.engine.observer import RunObserver

    class PassEvents(RunObserver):
        def __init__(self):
            self.step, self.spans = None, []

        def step_started(self, run, step, z, sigma):
            self.step = step

        @contextmanager
        def phase(self, name):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            t0 = time.perf_counter()
            yield
            end.record()
            self.spans.append((name, self.step, start, end, 1000 * (time.perf_counter() - t0)))

        def summary(self) -> dict:
            """The median GPU span of the passes of steps without refinement; every pass's span and the gaps between
            passes of each step with several (the first step's first two: the eager pass, then the compilation
            check and the capture); per phase kind the median and sum of its GPU spans and of the CPU's time in it."""
            torch.cuda.synchronize()
            by_step: dict = {}
            for name, step, start, end, _ in self.spans:
                if name == "gradient pass":
                    by_step.setdefault(step, []).append((start, end))
            single = [s.elapsed_time(e) for passes in by_step.values() if len(passes) == 1 for s, e in passes]
            refined = {step: {"pass_ms": [round(s.elapsed_time(e), 3) for s, e in passes],
                              "gap_ms": [round(e.elapsed_time(s), 3) for (_, e), (s, _) in zip(passes, passes[1:])]}
                       for step, passes in by_step.items() if len(passes) > 1}
            phases = {}
            for kind in ("start", "excite", "cfg", "cfg plain", "finish"):
                spans = [(s.elapsed_time(e), cpu) for name, _, s, e, cpu in self.spans if name == kind]
                if spans:
                    gpu, cpu = zip(*spans)
                    phases[kind] = {"n": len(spans), "median_ms": statistics.median(gpu), "sum_ms": sum(gpu),
                                    "cpu_median_ms": statistics.median(cpu), "cpu_sum_ms": sum(cpu)}
            return {"single_pass_steps": {"n": len(single), "median_ms": statistics.median(single) if single else None},
                    "refinement_steps": refined, "phases": phases}

    return PassEvents()


def replays_as_refinement(run, z, sigma, out: dict, n=60) -> None:
    """The first step's pass replayed n times, each after reading the last one's loss on the host (as the
    refinement loop does), each timed by CUDA events: whether a pass slows down over a long series by itself."""
    gradient_pass = run.gradient_pass
    for _ in range(2):  # the run's eager first pass, then the one that compiles (if on) and captures
        gradient_pass(z, sigma)
    spans = []
    for _ in range(n):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        result = gradient_pass(z, sigma)
        end.record()
        result.loss.tolist()
        spans.append((start, end))
    ms = [s.elapsed_time(e) for s, e in spans]
    out["series_pass_ms"] = {"first_10": statistics.median(ms[:10]), "last_10": statistics.median(ms[-10:]),
                             "all": [round(v, 3) for v in ms]}


def refinement_split(runner, batch: int) -> dict:
    """A 50-step run with the default refinement, twice (the second kept), every phase timed by CUDA events; the run's
    wall time beside the same run without events; and the first step's pass replayed as the refinement loop does."""
    out: dict = {}
    runner.at_first_step(batch, lambda run, z, sigma: replays_as_refinement(run, z, sigma, out))
    for _ in range(2):
        events = pass_events()
        torch.cuda.synchronize()
        t0, started = time.perf_counter(), time.time()
        runner.ae(batch, 50, ae_bench.MODES["ae_default"], events)
        torch.cuda.synchronize()
        out["run_ms_with_events"] = 1000 * (time.perf_counter() - t0)
        out["run_epoch_s"] = [started, time.time()]  # to find the run in a log of the GPU's clocks
    out.update(events.summary())
    out["run_ms"] = cuda_ms(lambda: runner.ae(batch, 50, ae_bench.MODES["ae_default"]), repeats=2, warmup=0)
    return out


KINDS = (  # (kind, substrings of a kernel's name), the first match wins: cuDNN's attention kernels name "fprop" too
    ("attention", ("sdpa", "fmha", "flash", "attention")),
    ("convolution", ("conv", "fprop", "dgrad", "wgrad", "implicit_gemm")),
    ("matrix product", ("gemm", "nvjet", "cutlass", "xmma", "sm90_")),
    ("fused (Triton)", ("triton",)),
)


def kernel_split(events, passes: int) -> dict:
    """GPU kernel time per pass by kind (attention, convolution, matrix product, Inductor's fused Triton kernels,
    other), and the 25 costliest kernels by full name."""
    kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    kinds: dict[str, dict] = {}
    for e in kernels:
        name = e.key.lower()
        kind = next((k for k, marks in KINDS if any(m in name for m in marks)), "other")
        entry = kinds.setdefault(kind, {"ms": 0.0, "launches": 0})
        entry["ms"] += e.self_device_time_total / 1000 / passes
        entry["launches"] += e.count / passes
    top = sorted(kernels, key=lambda e: -e.self_device_time_total)[:25]
    return {"total_ms": sum(k["ms"] for k in kinds.values()), "kinds": kinds,
            "top": [{"name": e.key, "ms": e.self_device_time_total / 1000 / passes, "launches": e.count / passes}
                    for e in top]}


COPIES = ("aten::copy_", "aten::clone", "aten::contiguous", "aten::_to_copy")


def copy_sources(events, passes: int) -> list[dict]:
    """The copies ATen makes inside the compiled pass's calls to it (layout conversions of cuBLAS, cuDNN and
    attention calls, which Inductor cannot fuse): GPU time per pass by the outermost ATen operation that made them."""
    sources: dict[str, dict] = {}
    for e in events:
        parent = e.cpu_parent
        if e.name not in COPIES or (parent is not None and parent.name in COPIES):
            continue
        caller = e
        while caller.cpu_parent is not None and caller.cpu_parent.name.startswith("aten::"):
            caller = caller.cpu_parent
        entry = sources.setdefault(caller.name, {"ms": 0.0, "copies": 0})
        entry["ms"] += e.device_time_total / 1000 / passes
        entry["copies"] += 1 / passes
    return sorted(({"caller": k, **v} for k, v in sources.items()), key=lambda d: -d["ms"])[:12]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--comfyui")
    p.add_argument("--out", default="bench/out/profile.json")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--arch", default="sd15", choices=["sd15", "sdxl"])
    p.add_argument("--layouts", default="channels_last", help="the replayed pass's layouts to profile, of "
                   "nchw and channels_last (nodes/engine/inference_weights.py)")
    p.add_argument("--pass-only", action="store_true", help="profile the gradient pass only, not whole runs")
    p.add_argument("--compile-pass", action="store_true", help="the run compiles its pass (node input compile_pass)")
    p.add_argument("--refinement", action="store_true", help="also split a run with the default refinement by CUDA "
                   "events (refinement_split)")
    args = p.parse_args()
    host.import_pack()
    host.import_comfy(host.find_comfyui(args.comfyui), cpu=False)
    import comfy.utils

    from aande_pack.nodes.engine.gradient_pass import CHANNELS_LAST_SWITCH
    from aande_pack.nodes.engine.observer import RunObserver
    comfy.utils.PROGRESS_BAR_ENABLED = False
    dev = torch.device("cuda")
    plan = ae_bench.Plan(device=dev, dtype=torch.float16, steps=50, batches=(args.batch,), repeats=1,
                         warmup_steps=2, budget_s=1e9, cases=set(), compile_pass=args.compile_pass)
    arch = ae_bench.archs(False)[args.arch]
    runner = ae_bench.ComfyRunner(plan, arch, models.make_model(arch.kind, dtype=torch.float16, device=dev))
    out: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "arch": args.arch,
                 "batch": args.batch}

    for layout in args.layouts.split(","):
        os.environ[CHANNELS_LAST_SWITCH] = "1" if layout == "channels_last" else "0"
        out[layout] = {}
        runner.at_first_step(args.batch, lambda run, z, sigma: profile_pass(run, z, sigma, out[layout]))
        print(f"{layout}: eager {out[layout]['eager_ms']:.2f} ms, replayed {out[layout].get('graph_ms', 0):.2f} ms",
              flush=True)
        if "graph_kernels" in out[layout]:
            split = out[layout]["graph_kernels"]
            print(f"replayed pass{' (compiled)' if out[layout]['graph_compiled'] else ''}: kernels "
                  f"{split['total_ms']:.2f} ms, " + ", ".join(f"{k} {v['ms']:.2f} ms ({v['launches']:.0f})"
                                                             for k, v in split["kinds"].items()), flush=True)
        for source in out[layout].get("compiled_copies", []):
            print(f"copies made inside {source['caller']}: {source['ms']:.3f} ms ({source['copies']:.0f})", flush=True)
    os.environ.pop(CHANNELS_LAST_SWITCH, None)
    if args.pass_only:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1))
        return

    # whole runs split: gradient passes / rest of the A&E update / CFG forward at A&E steps and at plain steps
    timing: dict[str, list[float]] = {}

    class PhaseTimer(RunObserver):
        @contextmanager
        def phase(self, name):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            yield
            torch.cuda.synchronize()
            timing.setdefault(name, []).append(1000 * (time.perf_counter() - t0))

    for _ in range(2):  # the second run's split is kept
        timing.clear()
        t0 = time.perf_counter()
        runner.ae(args.batch, 50, ae_bench.MODES["ae_noref"], PhaseTimer())
        torch.cuda.synchronize()
        timing["node"] = [1000 * (time.perf_counter() - t0)]
    out["step_split_ms"] = {k: {"n": len(v), "median": statistics.median(v)} for k, v in timing.items()}
    plain_ms = cuda_ms(lambda: runner.plain(args.batch, 50), repeats=3, warmup=1)
    noref_ms = cuda_ms(lambda: runner.ae(args.batch, 50, ae_bench.MODES["ae_noref"]), repeats=3, warmup=1)
    out["plain_run_ms"], out["ae_noref_run_ms"] = plain_ms, noref_ms
    out["ae_step_extra_ms"] = (noref_ms - plain_ms) / 25
    if args.refinement:
        out["refinement"] = refinement_split(runner, args.batch)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    for k, v in out.items():
        print(f"{k}:\n{v}" if isinstance(v, str) and "\n" in v else f"{k}: {v}")


if __name__ == "__main__":
    main()
