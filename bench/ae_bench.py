"""Times plain sampling, A&E sampling and diffusers' A&E pipeline on random-weight SD1.5 / SDXL models (issue 7).

    python3 -m bench.ae_bench [--device cuda] [--out bench/out/ae_bench.json]      # the full run (a CUDA GPU)
    python3 -m bench.ae_bench --device cpu --quick                                  # tiny models, end to end

Per case: median wall time over the timed runs (after one warm-up run), peak memory, UNet passes counted by hooks
(full forwards, gradient forwards, truncated forwards, backward passes; plus the gradient passes replayed from a
CUDA graph, which no hook sees) and the ratio to plain sampling. The floor of an A&E case is plain time +
(gradient passes) x (cost of one eager truncated forward + loss + backward, timed alone inside a real run); the
graph floor uses the cost of one pass replayed from the CUDA graph instead. Writes JSON (after every case) and a
markdown table next to it.
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from harness import diffusers_twin, host, models

from . import PEAK_TFLOPS, ROOT
from .counters import PassCounter

MODES = {"plain": None, "ae_noref": {"thresholds": ""}, "ae_default": {}}
TOKENS = "2,5"


@dataclass(frozen=True)
class Arch:
    name: str     # "sd15" or "sdxl", as the table shows it
    kind: str     # the harness model kind
    latent: int   # latent side; the image is 8x larger


def archs(quick: bool) -> dict[str, Arch]:
    """Full SD1.5 (512x512) and SDXL (1024x1024), or the test harness's tiny sd1/sdxl at 128x128."""
    if quick:
        return {"sd15": Arch("sd15", "sd1", 16), "sdxl": Arch("sdxl", "sdxl", 16)}
    return {"sd15": Arch("sd15", "sd15-full", 64), "sdxl": Arch("sdxl", "sdxl-full", 128)}


@dataclass
class Plan:
    device: torch.device
    dtype: torch.dtype
    steps: int
    batches: tuple[int, ...]
    repeats: int
    warmup_steps: int
    budget_s: float
    cases: set[str]
    eval_only: bool = False  # time each model and batch's gradient evaluation only, no sampling cases
    compile_pass: bool = False  # the A&E node input compile_pass (compiled_pass.py) in every A&E case
    cfg: float = 7.5
    seed: int = 0
    started: float = field(default_factory=time.perf_counter)

    def over_budget(self) -> bool:
        return time.perf_counter() - self.started > self.budget_s


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device):
    return torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None


class PackWarnings(logging.Handler):
    """Each distinct WARNING line of the pack's log (a pass that could not be compiled or captured, and why), for the
    JSON: the log of a run on the GPU machine may not come back, and `compiled: false` says little without it
    (docs/benchmarks.md, step 19)."""

    def __init__(self, into: list[str]):
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord):
        message = record.getMessage()
        if message not in self.into:
            self.into.append(message)


class Bench:
    """Runs cases, keeps the results and rewrites the JSON after each one."""

    def __init__(self, plan: Plan, out: Path, meta: dict):
        self.plan, self.out = plan, out
        self.results = {"meta": meta, "eval_ms": {}, "cases": [], "skipped": [], "errors": [], "pack_warnings": []}

    def save(self):
        self.out.parent.mkdir(parents=True, exist_ok=True)
        add_floors(self.results)
        self.out.write_text(json.dumps(self.results, indent=1))
        self.out.with_suffix(".md").write_text(table(self.results))

    def skip(self, what: str, why: str):
        print(f"[bench] skipped {what}: {why}", flush=True)
        self.results["skipped"].append({"case": what, "why": why})
        self.save()

    def guarded(self, name: str, fn, *args):
        """fn(*args); an error is recorded and the bench goes on with the next part (device time is scarce)."""
        try:
            return fn(*args)
        except Exception as e:
            traceback.print_exc()
            self.results["errors"].append({"part": name, "error": f"{type(e).__name__}: {e}"})
            self.save()
            free(self.plan.device)

    def run_case(self, key: dict, counter: PassCounter, run):
        name = "{arch} b{batch} {impl} {mode}".format(**key)
        if self.plan.over_budget():
            return self.skip(name, f"time budget of {self.plan.budget_s:.0f} s spent")
        print(f"[bench] {name}", flush=True)
        self.guarded(name, self._run_case, key, counter, run)

    def _run_case(self, key: dict, counter: PassCounter, run):
        """run(steps) -> (latent, record or None). One warm-up with warmup_steps, then the timed full runs."""
        run(self.plan.warmup_steps)
        times, peaks = [], []
        for _ in range(self.plan.repeats):
            counter.reset()
            sync(self.plan.device)
            reset_peak(self.plan.device)
            t0 = time.perf_counter()
            latent, record = run(self.plan.steps)
            sync(self.plan.device)
            times.append(time.perf_counter() - t0)
            peaks.append(peak_gib(self.plan.device))
            if self.plan.over_budget():
                break
        case = dict(key, times_s=times, median_s=statistics.median(times),
                    peak_gib=None if peaks[0] is None else max(peaks), passes=passes(counter, record),
                    finite=bool(torch.isfinite(latent).all()))
        if record is not None:
            case["refinement_iterations"] = [max((len(r) for r in s.refinement_losses), default=0)
                                             for s in record.steps]
            case["ae_steps"] = len(record.steps)
        self.results["cases"].append(case)
        print(f"[bench]   median {case['median_s']:.3f} s over {len(times)}, peak {case['peak_gib']}, "
              f"passes {case['passes']}", flush=True)
        self.save()


def passes(counter: PassCounter, record) -> dict:
    """The hooks' counts, with the CUDA-graph replays of the gradient pass added: replays run no Python, so no
    hook sees them, while the one capture ran the pass's Python (and hooks) without executing it, unless it
    captured the compiled pass (whose trace the counter leaves out)."""
    out = counter.snapshot()
    out["replayed"] = getattr(record, "graph_replays", 0)
    if out["replayed"]:
        capture_seen = 0 if record.compiled_pass else 1
        for k in ("grad", "truncated", "backward"):
            out[k] += out["replayed"] - capture_seen
    if record is not None and record.attend_and_excite and out["grad"] != record.gradient_passes:
        raise AssertionError(f"hooks count {out['grad']} gradient forwards, the run {record.gradient_passes}")
    return out


# ---------------------------------------------------------------- ComfyUI


class Measured(Exception):
    """Ends a run once its gradient pass has been timed."""


def median_ms(fn, device, warmup=2, repeats=5):
    """Median wall time of fn() in ms, synchronised, after warm-up calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def pass_timer(device):
    """A RunObserver for the first A&E step of a real run: it times one gradient pass, eagerly and (where the run
    has one) replayed from its CUDA graph, counts the FLOPs of one pass and of the step's CFG model call
    (torch.utils.flop_counter: matrix products, convolutions, attention), into its `ms`, then ends the run."""
    from torch.utils.flop_counter import FlopCounterMode

    from aande_pack.nodes.engine.observer import RunObserver

    class PassTimer(RunObserver):
        ms: dict = {}

        def step_started(self, run, step, z, sigma):
            gradient_pass = run.gradient_pass
            self.ms = {"eager": median_ms(lambda: gradient_pass.eager(z, sigma), device)}
            if gradient_pass.eager_reason is None:
                sync(device)
                t0 = time.perf_counter()
                for _ in range(2):  # the run's eager first pass, then the one that compiles (if on) and captures
                    gradient_pass(z, sigma)
                sync(device)
                self.ms["setup_s"] = time.perf_counter() - t0
                self.ms["compiled"] = gradient_pass.compiled
                self.ms["graph"] = median_ms(lambda: gradient_pass(z, sigma), device)
            with FlopCounterMode(display=False) as counter:
                gradient_pass.eager(z, sigma)
            self.ms["pass_flops"] = counter.get_total_flops()

        @contextmanager
        def phase(self, name):
            if name != "cfg":
                yield
                return
            with FlopCounterMode(display=False) as counter:
                yield
            self.ms["cfg_flops"] = counter.get_total_flops()
            raise Measured

    return PassTimer()


class ComfyRunner:
    """Plain KSampler (ComfyUI's own KSampler function) and the A&E KSampler's sampling, on one model."""

    def __init__(self, plan: Plan, arch: Arch, model):
        from aande_pack.nodes import compat
        from aande_pack.nodes.declarations.inputs import ae_inputs, settings_from
        from aande_pack.nodes.engine import patch
        self.plan, self.arch, self.model = plan, arch, model
        self.compat, self.patch = compat, patch
        self.ae_inputs, self.settings_from = ae_inputs, settings_from
        self.positive = models.make_conditioning(arch.kind, 1, side=8 * arch.latent)
        self.negative = models.make_conditioning(arch.kind, 2, side=8 * arch.latent)
        unet = model.model.diffusion_model
        self.counter = PassCounter(unet.input_blocks[0][0], unet.out)

    def latent(self, batch):
        return {"samples": torch.zeros(batch, 4, self.arch.latent, self.arch.latent)}

    def settings(self, overrides):
        kw = {name: spec[1]["default"] for name, spec in self.ae_inputs().items()}
        kw.update(token_indices=TOKENS, compile_pass=self.plan.compile_pass, **overrides)
        return self.settings_from(kw)

    def plain(self, batch, steps):
        p = self.plan
        with torch.inference_mode():
            (out,) = self.compat.common_ksampler(self.model, p.seed, steps, p.cfg, "ddim", "ddim_uniform",
                                                 self.positive, self.negative, self.latent(batch), denoise=1.0)
        return out["samples"], None

    def ae(self, batch, steps, overrides, observer=None):
        p = self.plan
        extra = {"observer": observer} if observer is not None else {}
        with torch.inference_mode():
            out, record = self.patch.ksample(self.model, p.seed, steps, p.cfg, "ddim", "ddim_uniform", self.positive,
                                             self.negative, self.latent(batch), 1.0, self.settings(overrides), **extra)
        return out["samples"], record

    def run(self, mode, batch, steps):
        return self.plain(batch, steps) if MODES[mode] is None else self.ae(batch, steps, MODES[mode])

    def at_first_step(self, batch, measure):
        """measure(run, z, sigma) at the first A&E step of a real run (refinement off), which then stops."""
        from aande_pack.nodes.engine.observer import RunObserver
        found = {}

        class AtFirstStep(RunObserver):
            def step_started(self, run, step, z, sigma):
                found["value"] = measure(run, z, sigma)
                raise Measured

        try:
            self.ae(batch, self.plan.steps, MODES["ae_noref"], AtFirstStep())
        except Measured:
            pass
        return found["value"]

    def eval_ms(self, batch) -> dict:
        """Median time of one gradient pass (truncated forward + loss + backward), eager and replayed from the
        run's CUDA graph where it has one, timed alone at the first A&E step of a real run, which then stops."""
        timer = pass_timer(self.plan.device)
        try:
            self.ae(batch, self.plan.steps, MODES["ae_noref"], timer)
        except Measured:
            pass
        return timer.ms


def comfy_phase(bench: Bench, arch: Arch, modes, twin=None):
    """Build the arch's ComfyUI model (from the diffusers twin's weights if given), run its cases, free it."""
    plan = bench.plan
    if twin is not None:
        model = diffusers_twin.comfy_twin(twin, arch.kind, device=plan.device)
        twin.to("cpu")  # back on the GPU only for its own cases
    else:
        model = models.make_model(arch.kind, seed=plan.seed, dtype=plan.dtype, device=plan.device)
    try:
        comfy_cases(bench, ComfyRunner(plan, arch, model), modes)
    finally:
        del model
        free(plan.device)


def comfy_cases(bench: Bench, runner: "ComfyRunner", modes):
    plan, arch = bench.plan, runner.arch.name
    for batch in plan.batches:
        key = f"{arch}_b{batch}"
        if not plan.over_budget():
            ms = bench.guarded(f"{key} gradient evaluation", runner.eval_ms, batch)
            if ms:
                bench.results["eval_ms"][key] = ms
                print(f"[bench] {key}: one gradient evaluation {ms}", flush=True)
        for mode in () if plan.eval_only else modes:
            bench.run_case(dict(arch=arch, batch=batch, impl="comfyui", mode=mode), runner.counter,
                           lambda steps, m=mode, b=batch: runner.run(m, b, steps))


# ---------------------------------------------------------------- diffusers


def diffusers_cases(bench: Bench, arch: Arch, unet):
    """diffusers' StableDiffusionPipeline and A&E pipeline on the SD1.5 twin, with our A&E settings for the
    run's step count (at 50 steps: the pipeline's defaults)."""
    from aande_pack.aande_core.config import AESettings
    plan, config = bench.plan, AESettings()
    unet.to(plan.device)
    plain_pipe, ae_pipe = diffusers_twin.pipelines(unet)
    counter = PassCounter(unet.conv_in, unet.conv_out)
    gen = torch.Generator().manual_seed(plan.seed)
    latent = arch.latent
    positive = models.make_conditioning(arch.kind, 1)[0][0].to(plan.device, plan.dtype)
    negative = models.make_conditioning(arch.kind, 2)[0][0].to(plan.device, plan.dtype)
    side, maps = latent * 8, -(-latent // 4)  # A&E reads latent/4 maps (16x16 at 512x512)
    for batch in plan.batches:
        latents = torch.randn(batch, 4, latent, latent, generator=gen).to(plan.device, plan.dtype)
        common = dict(prompt_embeds=positive.repeat(batch, 1, 1), negative_prompt_embeds=negative.repeat(batch, 1, 1),
                      latents=latents, guidance_scale=plan.cfg, height=side, width=side, output_type="latent")

        def run(steps, mode, common=common, batch=batch):
            if MODES[mode] is None:
                out = plain_pipe(prompt=None, num_inference_steps=steps, **common)
            else:
                refine = {} if mode == "ae_noref" else config.refinement_thresholds(steps)
                out = ae_pipe(prompt=None, token_indices=[[int(t) for t in TOKENS.split(",")]] * batch,
                              num_inference_steps=steps, max_iter_to_alter=config.alter_steps(steps),
                              thresholds=refine, scale_factor=config.scale_factor, attn_res=(maps, maps), **common)
            return out.images, None

        for mode in MODES:
            bench.run_case(dict(arch=arch.name, batch=batch, impl="diffusers", mode=mode), counter,
                           lambda steps, m=mode: run(steps, m))
    counter.remove()


# ---------------------------------------------------------------- results


def add_floors(results: dict):
    """Ratios to plain sampling (same implementation) and to the floors: ComfyUI plain + our gradient passes x the
    cost of one eager truncated forward + backward (the issue's floor), and x the cost of one replayed from a
    CUDA graph (what our passes cost where the graph is used)."""
    cases = results["cases"]
    find = {(c["arch"], c["batch"], c["impl"], c["mode"]): c for c in cases}
    for c in cases:
        plain = find.get((c["arch"], c["batch"], c["impl"], "plain"))
        c["x_plain"] = c["median_s"] / plain["median_s"] if plain else None
        ours = find.get((c["arch"], c["batch"], "comfyui", c["mode"]))
        comfy_plain = find.get((c["arch"], c["batch"], "comfyui", "plain"))
        eval_ms = results["eval_ms"].get(f"{c['arch']}_b{c['batch']}", {})
        for kind, suffix in (("eager", ""), ("graph", "_graph")):
            if c["mode"] == "plain" or not (ours and comfy_plain and kind in eval_ms):
                c["floor" + suffix + "_s"] = c["x_floor" + suffix] = None
                continue
            floor = comfy_plain["median_s"] + ours["passes"]["grad"] * eval_ms[kind] / 1000
            c["floor" + suffix + "_s"], c["x_floor" + suffix] = floor, c["median_s"] / floor
        add_flops(c, eval_ms, results["meta"]["peak_tflops"])


def add_flops(case: dict, measured: dict, peak_tflops: float):
    """The case's FLOPs (per CFG model call, per gradient pass, whole run = CFG calls x fwd + passes x pass) and
    the model-FLOP utilisation of its gradient pass (at the replayed pass's time where there is a graph) and of
    the whole run, against `peak_tflops` (H200: ~790 TFLOP/s measured on dense bf16 matrix products). The diffusers
    rows use the ComfyUI model's counts (same weights, same layout)."""
    fwd, per_pass = measured.get("cfg_flops"), measured.get("pass_flops")
    case["fwd_tflop"] = fwd / 1e12 if fwd else None
    case["pass_tflop"] = per_pass / 1e12 if per_pass and case["mode"] != "plain" else None
    pass_ms = measured.get("graph", measured.get("eager"))
    case["mfu_pass"] = per_pass / (pass_ms / 1000) / (peak_tflops * 1e12) if case["pass_tflop"] and pass_ms else None
    if fwd is None or (case["mode"] != "plain" and per_pass is None):
        case["run_tflop"] = case["mfu_run"] = None
        return
    run_flops = case["passes"]["full"] * fwd + (case["passes"]["grad"] * per_pass if case["mode"] != "plain" else 0)
    case["run_tflop"] = run_flops / 1e12
    case["mfu_run"] = run_flops / case["median_s"] / (peak_tflops * 1e12)


def table(results: dict) -> str:
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    lines = ["| model | batch | impl | mode | median s | peak GiB | fwd full | fwd grad | fwd truncated | bwd "
             "| replayed | refine it. | x plain | floor s | x floor | graph floor s | x graph floor | TFLOP fwd "
             "| TFLOP pass | MFU pass | MFU run | finite |",
             "|" + " --- |" * 22]
    for c in results["cases"]:
        p = c["passes"]
        refine = sum(c["refinement_iterations"]) if "refinement_iterations" in c else None
        lines.append(f"| {c['arch']} | {c['batch']} | {c['impl']} | {c['mode']} | {c['median_s']:.3f} | "
                     f"{num(c['peak_gib'], '.2f')} | {p['full']} | {p['grad']} | {p['truncated']} | {p['backward']} | "
                     f"{p.get('replayed', 0)} | {num(refine, 'd')} | {num(c['x_plain'], '.2f')} | "
                     f"{num(c['floor_s'], '.3f')} | {num(c['x_floor'], '.2f')} | {num(c['floor_graph_s'], '.3f')} | "
                     f"{num(c['x_floor_graph'], '.2f')} | {num(c.get('fwd_tflop'), '.3f')} | "
                     f"{num(c.get('pass_tflop'), '.3f')} | {num(c.get('mfu_pass'), '.1%')} | "
                     f"{num(c.get('mfu_run'), '.1%')} | {'yes' if c['finite'] else 'NO'} |")
    def evaluation(v):
        parts = [f"{kind} {v[kind]:.2f} ms" for kind in ("eager", "graph") if kind in v]
        if "setup_s" in v:
            parts.append(f"first two passes {v['setup_s']:.1f} s ({'compiled' if v['compiled'] else 'not compiled'})")
        return ", ".join(parts)

    evals = "; ".join(f"{k}: {evaluation(v)}" for k, v in results["eval_ms"].items())
    notes = [f"One gradient evaluation (truncated forward + loss + backward): {evals or '-'}."]
    notes += [f"SDXL A&E ({c['mode']}, batch {c['batch']}) peak: {c['peak_gib']:.2f} GiB (target < 20 GiB)."
              for c in results["cases"] if c["arch"] == "sdxl" and c["mode"] != "plain" and c["peak_gib"] is not None]
    notes += [f"Skipped {s['case']}: {s['why']}" for s in results["skipped"]]
    notes += [f"Error in {e['part']}: {e['error']}" for e in results["errors"]]
    notes += [f"Pack warning: {w}" for w in results["pack_warnings"]]
    return "\n".join(lines + [""] + notes) + "\n"


# ---------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--quick", action="store_true", help="tiny models, 128x128, few steps, batches 1 and 2")
    p.add_argument("--steps", type=int, help="sampling steps (default 50, --quick 5); ddim_uniform gives exactly "
                   "this many only when it divides 1000")
    p.add_argument("--repeats", type=int, help="timed runs per case (default 3, --quick 2)")
    p.add_argument("--warmup-steps", type=int, default=2, help="steps of the warm-up run before each case")
    p.add_argument("--budget-s", type=float, help="start no case (and no further timed run) after this many "
                   "seconds (default 480 for the full run on CUDA, else none)")
    p.add_argument("--cases", default="sd15,sdxl,diffusers", help="any of sd15, sdxl, diffusers (comma-separated)")
    p.add_argument("--batches", help="batch sizes, comma-separated (default 1,4; --quick 1,2)")
    p.add_argument("--comfyui", help="ComfyUI folder (default: .device/comfyui, else .dev/comfyui-0.3.75)")
    p.add_argument("--out", default=str(ROOT / "bench" / "out" / "ae_bench.json"))
    p.add_argument("--peak-tflops", type=float, default=PEAK_TFLOPS, help="the GPU's dense fp16/bf16 matrix rate "
                   "for the MFU columns (H200: ~790 measured)")
    p.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN time its convolution algorithms per "
                   "shape (torch.backends.cudnn.benchmark, what ComfyUI's --fast autotune sets)")
    p.add_argument("--eval-only", action="store_true", help="time only the gradient evaluation (eager, replayed, "
                   "FLOPs) of each model and batch in --cases, no sampling cases: a cheap A/B of the pass")
    p.add_argument("--compile-pass", action="store_true", help="A&E cases with the node input compile_pass on: "
                   "the CUDA-graph pass compiled by torch.compile (its compilation falls in each model and batch's "
                   "gradient evaluation, outside the timed runs)")
    return p.parse_args(argv)


def comfy_version(comfy_dir: Path) -> str | None:
    text = (comfy_dir / "comfyui_version.py").read_text() if (comfy_dir / "comfyui_version.py").is_file() else ""
    return text.split("__version__ = ")[-1].strip().strip('"') if "__version__" in text else None


def free(device):
    import comfy.model_management
    comfy.model_management.unload_all_models()
    comfy.model_management.soft_empty_cache()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main(argv=None):
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --device cpu --quick for the CPU check")
    if args.device == "cpu":
        torch.set_num_threads(1)  # a correctness run; on a busy shared host more threads stall each other
    comfy_dir = host.find_comfyui(args.comfyui)
    diffusers, diffusers_missing = host.import_diffusers()
    host.import_pack()
    host.import_comfy(comfy_dir, cpu=args.device == "cpu")
    import comfy.model_management
    import comfy.utils

    from aande_pack.nodes.engine.gradient_pass import nhwc_norm_enabled
    comfy.utils.PROGRESS_BAR_ENABLED = False
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True

    device = comfy.model_management.get_torch_device()
    plan = Plan(device=device, dtype=torch.float16 if device.type == "cuda" else torch.float32,
                steps=args.steps or (5 if args.quick else 50),
                batches=tuple(int(b) for b in args.batches.split(",")) if args.batches else (1, 2) if args.quick else (1, 4),
                repeats=args.repeats or (2 if args.quick else 3), warmup_steps=args.warmup_steps,
                budget_s=args.budget_s or (480.0 if device.type == "cuda" and not args.quick else float("inf")),
                cases=set(args.cases.split(",")) - ({"diffusers"} if args.eval_only else set()),
                eval_only=args.eval_only, compile_pass=args.compile_pass)
    meta = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine(),
            "comfyui_version": comfy_version(comfy_dir),
            "dtype": str(plan.dtype), "comfyui": str(comfy_dir), "quick": args.quick, "steps": plan.steps,
            "sampler": "ddim + ddim_uniform", "cfg": plan.cfg, "token_indices": TOKENS, "repeats": plan.repeats,
            "warmup_steps": plan.warmup_steps, "diffusers": getattr(diffusers, "__version__", None),
            "diffusers_missing": diffusers_missing, "argv": sys.argv[1:], "peak_tflops": args.peak_tflops,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "nhwc_norm": nhwc_norm_enabled(), "compile_pass": args.compile_pass, "eval_only": args.eval_only}
    bench = Bench(plan, Path(args.out), meta)
    logging.getLogger("attend_and_excite").addHandler(PackWarnings(bench.results["pack_warnings"]))
    arch = archs(args.quick)

    peer = None
    if "diffusers" in plan.cases and diffusers is None:
        bench.skip("diffusers peer", f"diffusers does not import: {diffusers_missing}")
    elif "diffusers" in plan.cases:
        peer = bench.guarded("diffusers SD1.5 UNet", diffusers_twin.diffusers_unet, arch["sd15"].kind, plan.seed,
                             None, device, plan.dtype)
        if peer is not None and "sd15" not in plan.cases:
            peer.to("cpu")  # back on the GPU only for its own cases
    if "sd15" in plan.cases:
        bench.guarded("sd15", comfy_phase, bench, arch["sd15"], MODES, peer)
    if "sdxl" in plan.cases:
        bench.guarded("sdxl", comfy_phase, bench, arch["sdxl"], ("plain", "ae_default", "ae_noref"))
    if peer is not None:
        bench.guarded("diffusers", diffusers_cases, bench, arch["sd15"], peer)
    bench.save()
    print(table(bench.results), flush=True)
    print(f"[bench] wrote {bench.out} and {bench.out.with_suffix('.md')} in {time.perf_counter() - plan.started:.0f} s")


if __name__ == "__main__":
    main()
