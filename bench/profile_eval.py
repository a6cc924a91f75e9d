"""Where the time of an A&E step goes (issue 7's optimisation log): one gradient evaluation eager, under the
profiler (GPU busy time against wall time) and replayed from a CUDA graph; and a whole A&E step split into
gradient evaluations, the rest of the A&E update and the CFG forward, against a plain step.

    python3 -m bench.profile_eval --comfyui .device/comfyui [--arch sdxl] [--batch 4] --out $OUT/profile.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
import traceback
from pathlib import Path

import torch

from . import host


def cuda_ms(fn, repeats=10, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--comfyui")
    p.add_argument("--out", default="bench/out/profile.json")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--arch", default="sd15", choices=["sd15", "sdxl"])
    args = p.parse_args()
    host.import_comfy(host.find_comfyui(args.comfyui), cpu=False)
    pack = host.import_pack()
    import comfy.utils
    from torch.profiler import ProfilerActivity, profile

    from . import ae_bench, models
    comfy.utils.PROGRESS_BAR_ENABLED = False
    ae_sampler = pack[1]
    dev = torch.device("cuda")
    plan = ae_bench.Plan(device=dev, dtype=torch.float16, steps=50, batches=(args.batch,), repeats=1,
                         warmup_steps=2, budget_s=1e9, cases=set())
    arch = models.archs(False)[args.arch]
    model = models.comfy_model(arch, dev, torch.float16)
    runner = ae_bench.ComfyRunner(plan, arch, model, pack)
    out: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "arch": args.arch,
                 "batch": args.batch}
    run_cls = ae_sampler._Run
    original = run_cls._evaluate
    orig_grad_pass = run_cls._gradient_pass

    class Done(Exception):
        pass

    def probe(run, z, scale, sigma):
        out["eager_ms"] = cuda_ms(lambda: original(run, z, scale, sigma))
        t_swap = time.perf_counter()
        for _ in range(20):
            with run.weights.swapped():
                pass
        out["alias_swap_ms"] = 1000 * (time.perf_counter() - t_swap) / 20
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                original(run, z, scale, sigma)
            torch.cuda.synchronize()
        events = prof.key_averages()
        kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
        out["gpu_kernel_ms_per_eval"] = sum(e.self_device_time_total for e in kernels) / 1000 / 3
        out["kernel_launches_per_eval"] = sum(e.count for e in events if e.key.startswith("cudaLaunchKernel")
                                              or e.key.startswith("cuLaunchKernel")) / 3
        out["top_gpu"] = events.table(sort_by="self_device_time_total", row_limit=15)
        out["top_cpu"] = events.table(sort_by="cpu_time_total", row_limit=12)
        eager = original(run, z, scale, sigma)
        if isinstance(run.gradient_pass, ae_sampler.GraphedEvaluation):
            out["graph_ms"] = cuda_ms(lambda: run.gradient_pass(z, scale, sigma))
            res = run.gradient_pass(z, scale, sigma)
            out["graph_loss_diff"] = float((res.loss - eager.loss).abs().max())
            out["graph_grad_rel"] = float((res.grad - eager.grad).norm() / eager.grad.norm())
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for _ in range(3):
                    run.gradient_pass(z, scale, sigma)
                torch.cuda.synchronize()
            out["graph_top_gpu"] = prof.key_averages().table(sort_by="self_device_time_total", row_limit=8)
        raise Done

    run_cls._gradient_pass = probe
    try:
        runner.ae(args.batch, 50, ae_bench.MODES["ae_noref"])
    except Done:
        pass
    finally:
        run_cls._gradient_pass = orig_grad_pass

    # one A&E step split: gradient evaluations / rest of the update / CFG forward; plain steps' forwards
    timing = {"pass": [], "excite": [], "cfg_ae": [], "cfg_plain": [], "run_init": [], "finish": [], "node": []}

    def timed(key, fn):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        r = fn()
        torch.cuda.synchronize()
        timing[key].append(1000 * (time.perf_counter() - t0))
        return r

    orig_excite, orig_at_step, orig_call = run_cls._excite, run_cls.at_step, ae_sampler._AEDenoiser.__call__
    orig_init, orig_finish = run_cls.__init__, run_cls.finish

    def at_step(run, x, sigma, evaluate_model):
        run._pending = False
        timed("excite", lambda: orig_excite(run, x, sigma))
        return timed("cfg_ae", evaluate_model)

    def call(den, x, sigma, **kw):
        if den.run.pending():
            return den.run.at_step(x, sigma, lambda: den.inner(x, sigma, **kw))
        return timed("cfg_plain", lambda: den.inner(x, sigma, **kw))

    run_cls._gradient_pass = lambda run, *a: timed("pass", lambda: orig_grad_pass(run, *a))
    run_cls.at_step, ae_sampler._AEDenoiser.__call__ = at_step, call
    run_cls.__init__ = lambda run, *a: timed("run_init", lambda: orig_init(run, *a))
    run_cls.finish = lambda run: timed("finish", lambda: orig_finish(run))
    try:
        for _ in range(2):
            for k in timing:
                timing[k] = []
            timed("node", lambda: runner.ae(args.batch, 50, ae_bench.MODES["ae_noref"]))
    finally:
        run_cls._gradient_pass, run_cls.at_step, ae_sampler._AEDenoiser.__call__ = orig_grad_pass, orig_at_step, orig_call
        run_cls.__init__, run_cls.finish = orig_init, orig_finish
    out["step_split_ms"] = {k: {"n": len(v), "median": statistics.median(v)} for k, v in timing.items() if v}
    plain_ms = cuda_ms(lambda: runner.plain(args.batch, 50), repeats=3, warmup=1)
    noref_ms = cuda_ms(lambda: runner.ae(args.batch, 50, ae_bench.MODES["ae_noref"]), repeats=3, warmup=1)
    out["plain_run_ms"], out["ae_noref_run_ms"] = plain_ms, noref_ms
    out["ae_step_extra_ms"] = (noref_ms - plain_ms) / 25
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    for k, v in out.items():
        print(f"{k}:\n{v}" if isinstance(v, str) and "\n" in v else f"{k}: {v}")


if __name__ == "__main__":
    main()
