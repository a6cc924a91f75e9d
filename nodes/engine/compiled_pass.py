"""The gradient pass compiled into one program, for the CUDA-graph pass.

A replayed pass no longer waits on the CPU, but its GPU time is still spread over thousands of kernels: at SDXL
1024x1024 batch 1, 4,623 per pass, of which the matrix products and attention take about half the time and the
rest are small elementwise kernels, casts, norms and copies (docs/benchmarks.md, steps 9 and 14). Fusing those
needs a compiler that sees the whole pass, forward and backward together. torch.compile cannot take the pass as
ComfyUI runs it: its Python reads the patch dictionaries at every block, the capture keeps Python counters, and
the forward ends by raising StopForward, so dynamo would split it into dozens of graphs, each specialised on one
block (step 14).

So the pass is first traced as it runs (`make_fx`, real tensors): the result is one graph of ATen operations, the
forward up to the last captured layer, the loss and the backward to the latent, with ComfyUI's Python, the
patches and the stop already resolved. Every tensor the pass reads besides the latent and sigma (weights, text
conditioning, the objective's indices) becomes an input of that graph. In a channels-last pass the graph asks for
its convolutions' operands in NHWC (conv_layouts.py). The graph's work on those inputs alone (the cross-attention
keys and values of the text) is split off to run once per run (run_constants.py); torch.compile (Inductor, rounding
as eager PyTorch does) compiles the rest.

Tracing a pass takes seconds, more than compiling saves in one run, so a later run does not trace again: the
compiled graph is kept per process under the run's structure (`describe`: the model's modules and the layouts
of its weights, the conditioning's and the patches' layout, the objective's settings, the latent's shape), and
its inputs are found again by name among the new run's tensors (another prompt, another checkpoint of the same
architecture, a LoRA). Inductor's on-disk cache makes a new process's compilation of a graph seen before quick.
Every run checks its compiled pass against its own first, eager, pass before the CUDA graph captures it.

The node input compile_pass turns it on (off by default: the compilation costs 15 s to 5 minutes in the first
run of each model architecture, size and batch of a ComfyUI session, docs/benchmarks.md, steps 15, 18 and 21).
Only a pass that may be replayed from a CUDA graph is compiled (the same conditions: nothing of another node's runs
inside it, the weights stay put), since the trace freezes every Python decision of the pass just as the capture does.
Without Triton, or when tracing or compiling fails, the pass is captured as it runs, uncompiled, with a log line.
"""
from __future__ import annotations

import functools
import logging
import numbers
import time
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch._guards import TracingContext, tracing
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.proxy_tensor import make_fx

from ...aande_core.objective import PassResult
from .conv_layouts import channels_last_conv_operands
from .run_constants import Split, split_constant_work

log = logging.getLogger("attend_and_excite")

BACKEND = "inductor"  # torch.compile's; the CPU tests use "aot_eager" (the traced graph run as it is, no code made)
CACHE_SIZE = 8  # compiled structures kept per process (a ComfyUI session through several sizes and batches)
KEPT_BYTES = 2 ** 20  # a graph input no run tensor names is kept with the graph if this small (an index list)
# the compiled pass against the eager one at the same latent: a check that the graph fits its run, not a measure of
# rounding. On random weights both fp16 passes are far from the fp32 pass, the compiled one slightly nearer (relative
# L2 of the gradient to fp32's: SDXL 1024x1024 0.57 eager, 0.56 compiled; SD1.5 512x512 0.144, 0.141), and they
# differ from each other by 0.47 (cosine 0.89) and 0.08 (cosine 0.997) (H100, docs/benchmarks.md step 15)
LOSS_TOL, MIN_COSINE = 1e-3, 0.5  # absolute on the loss; cosine of the two gradients
# Inductor fuses fp16 operations and keeps their intermediate results in float32, where eager PyTorch rounds each to
# fp16: a pass no less accurate, but one that rounds elsewhere, and over a run with refinement on random weights
# those differences grew past what two eager runs differ by (docs/benchmarks.md, steps 15 and 16). With this
# Inductor rounds where eager does: the compiled pass then passed bench.gpu_checks' run-level checks, at no cost in
# time measured (H100, SD1.5 512x512 batch 4: 12.65 ms with, 12.68 ms without; step 18)
INDUCTOR_OPTIONS = {"emulate_precision_casts": True}
_COMPILED: OrderedDict = OrderedDict()  # structure of a run -> _Compiled


class CompiledPassMismatch(Exception):
    """The compiled pass does not give the eager pass's result."""


@functools.cache
def triton_available() -> bool:
    """Whether torch.compile can generate the compiled pass's GPU code (Triton, often missing on Windows); says so
    once per process when not."""
    import torch.utils._triton
    if torch.utils._triton.has_triton():
        return True
    log.info("A&E: compile_pass is on, but Triton (torch.compile's GPU code generator) is not installed: the gradient "
             "pass is replayed uncompiled (slower, the same result)")
    return False


def _layout(t: torch.Tensor) -> tuple:
    return tuple(t.shape), t.stride(), t.dtype, t.device


def _view(t: torch.Tensor) -> tuple:
    """What makes two tensor objects the same data: a traced constant may be another object than the run's."""
    return t.data_ptr(), _layout(t)


def describe(model: torch.nn.Module, **parts) -> tuple[tuple, dict[str, torch.Tensor]]:
    """(structure, tensors) of a run's pass: everything its Python decisions may depend on, hashable, and every
    tensor it may read, by name. `model`: its modules' types and its parameters' and buffers' names and layouts
    (not their values); `parts` (conditioning, objective, patched model options, capture settings): walked through
    dicts, sequences and plain objects, callables and other objects by type, numbers and strings by value, tensors
    by type and rank only (the sampler's sigmas are in the options: their length must not force a new
    compilation; the layout of a tensor the graph reads is checked when its inputs are bound)."""
    tensors = {f"model.{name}": t for name, t in (*model.named_parameters(), *model.named_buffers())}
    structure = [tuple(type(m).__qualname__ for m in model.modules()),
                 tuple((name, _layout(t)) for name, t in tensors.items())]
    seen: set[int] = set()

    def walk(value, name: str):
        if isinstance(value, torch.Tensor):  # its shape counts where the graph reads it (`_Compiled.bind`)
            tensors[name] = value
            return "tensor", value.dtype, value.device, value.dim()
        if isinstance(value, (str, numbers.Number, type(None), torch.dtype, torch.device)):
            return value
        if id(value) in seen:
            return "seen", type(value).__qualname__
        seen.add(id(value))
        if isinstance(value, dict):
            return tuple((repr(k), walk(v, f"{name}.{k}")) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return tuple(walk(v, f"{name}.{i}") for i, v in enumerate(value))
        if isinstance(value, torch.nn.Module) or callable(value) or not hasattr(value, "__dict__"):
            return "object", type(value).__module__, getattr(value, "__qualname__", type(value).__qualname__)
        return type(value).__qualname__, walk(vars(value), name)

    structure += [(key, walk(part, key)) for key, part in parts.items()]
    return tuple(structure), tensors


def lift_constants(gm: torch.fx.GraphModule) -> list[torch.Tensor]:
    """Turns every tensor the traced graph holds as a constant into an input after its own, in place, and returns
    those tensors in input order. A constant would tie the compiled graph to one run's weights and prompt, and
    Inductor's cache would hash the values of gigabytes of weights."""
    graph = gm.graph
    last = [n for n in graph.nodes if n.op == "placeholder"][-1]
    tensors, inputs = [], {}
    for node in list(graph.nodes):
        if node.op != "get_attr":
            continue
        if node.target not in inputs:
            value = getattr(gm, node.target)
            if not isinstance(value, torch.Tensor):
                continue
            with graph.inserting_after(last):
                last = inputs[node.target] = graph.placeholder(f"constant_{len(tensors)}")
            tensors.append(value)
        node.replace_all_uses_with(inputs[node.target])
        graph.erase_node(node)
    for target in inputs:
        delattr(gm, target)
    graph.lint()
    gm.recompile()
    return tensors


@dataclass
class _Compiled:
    """A compiled graph and how a run supplies its inputs after the latent and sigma."""
    fn: object                        # (z, sigma, *split.inputs(constants)) -> (loss, grad, token_maps, subject_maps)
    split: Split                      # the work on the constants alone, done once per run
    names: list                       # per constant: its name among a run's tensors (`describe`), or None
    kept: dict                        # index -> the small constant no name covers, kept from the trace
    layouts: list                     # per constant

    def bind(self, tensors: dict[str, torch.Tensor]) -> list[torch.Tensor] | None:
        """This run's constants, or None if one is missing or laid out otherwise."""
        constants = [self.kept[i] if name is None else tensors.get(name) for i, name in enumerate(self.names)]
        if any(c is None for c in constants) or [_layout(c) for c in constants] != self.layouts:
            return None
        return constants


class CompiledPass:
    """pass_(z, sigma) -> PassResult through a compiled graph, with one run's constants (`constants`, as bound);
    `inputs`: what the graph reads after z and sigma, with the work on the constants alone already done."""

    def __init__(self, compiled: _Compiled, constants: list[torch.Tensor]):
        self.fn, self.constants = compiled.fn, constants
        with torch.no_grad():
            self.inputs = compiled.split.inputs(constants)

    def __call__(self, z: torch.Tensor, sigma: torch.Tensor) -> PassResult:
        with torch.no_grad():
            return PassResult(*self.fn(z, sigma, *self.inputs))


def _trace_and_compile(eager, z, sigma, tensors: dict, channels_last: bool) -> tuple[_Compiled, CompiledPass, bool,
                                                                                   PassResult]:
    """(compiled graph, its pass with this run's constants, whether another run can supply its constants by name,
    the pass's result at z, sigma). channels_last: the pass's convolutions run in NHWC (conv_layouts.py)."""
    def flat(z, sigma):
        result = eager(z, sigma)
        return result.loss, result.grad, result.token_maps, result.subject_maps

    started = time.perf_counter()
    # one fake-tensor mode for the metadata of every traced value: without it make_fx makes one per value, and
    # each records a Python stack trace (half the time of tracing a pass of thousands of operations)
    with tracing(TracingContext(FakeTensorMode(allow_fallback_kernels=True))):
        gm = make_fx(flat, tracing_mode="real")(z, sigma)
    constants = lift_constants(gm)
    names_of = {_view(t): name for name, t in tensors.items()}
    names = [names_of.get(_view(c)) for c in constants]
    unnamed = [i for i, name in enumerate(names) if name is None]
    kept = {i: constants[i] for i in unnamed}
    reusable = sum(constants[i].nbytes for i in unnamed) <= KEPT_BYTES
    if channels_last:
        channels_last_conv_operands(gm)
    operations = len(gm.graph.nodes)
    split = split_constant_work(gm, varying=2)
    traced = time.perf_counter()
    log.info("A&E: compiling the gradient pass (compile_pass) for this model, size and batch: the first A&E run of "
             "each in this ComfyUI session pauses for it (15 s to 5 minutes, less once Inductor's disk cache has "
             "it); later runs reuse it")
    options = INDUCTOR_OPTIONS if BACKEND == "inductor" else None
    compiled = _Compiled(torch.compile(split.main, backend=BACKEND, dynamic=False, fullgraph=True, options=options),
                         split, names, kept, [_layout(c) for c in constants])
    pass_ = CompiledPass(compiled, constants)
    result = pass_(z, sigma)  # compiles now, not inside the CUDA graph's capture
    log.info("A&E: the gradient pass was traced in %.1f s (%d operations, %d inputs, %d of them computed once per "
             "run) and compiled in %.1f s", traced - started, operations, len(pass_.inputs) + 2,
             len(pass_.inputs) - len(split.kept), time.perf_counter() - traced)
    return compiled, pass_, reusable, result


def _disagreement(got: PassResult, expected: PassResult) -> str | None:
    loss = float((got.loss.float() - expected.loss.float()).abs().max())
    g, e = got.grad.float().flatten(), expected.grad.float().flatten()
    # two zero gradients (every subject's peak at 1: nothing to excite) agree
    cosine = 1.0 if not g.any() and not e.any() else float(torch.nn.functional.cosine_similarity(g, e, dim=0))
    log.debug("A&E: compiled pass against the eager one: loss difference %.2e, gradient cosine %.4f", loss, cosine)
    if not loss <= LOSS_TOL or not cosine >= MIN_COSINE:
        return f"loss differs by {loss:.2e}, gradient cosine {cosine:.3f}"
    return None


def compiled_pass(eager, z: torch.Tensor, sigma: torch.Tensor, expected: PassResult, structure: tuple,
                  tensors: dict[str, torch.Tensor], channels_last: bool = False) -> CompiledPass:
    """The compiled form of eager, checked to give `expected` (the eager pass at z, sigma): reused from an earlier
    run of the same structure (`describe`) with this run's tensors, else traced (one real pass, in the pass's own
    context: `GradientPass.active()`) and compiled. Raises CompiledPassMismatch if even a fresh compilation
    disagrees."""
    key = (BACKEND, structure, _layout(z), _layout(sigma))
    entry = _COMPILED.get(key)
    constants = entry.bind(tensors) if entry is not None else None
    if constants is not None:
        candidate = CompiledPass(entry, constants)
        if _disagreement(candidate(z, sigma), expected) is None:
            _COMPILED.move_to_end(key)
            return candidate
        log.info("A&E: the compiled gradient pass of an earlier run does not fit this one: compiling it anew")
    _COMPILED.pop(key, None)
    entry, candidate, reusable, result = _trace_and_compile(eager, z, sigma, tensors, channels_last)
    why = _disagreement(result, expected)
    if why:
        raise CompiledPassMismatch(f"the compiled pass does not give the eager pass's result: {why}")
    if reusable:
        _COMPILED[key] = entry
        while len(_COMPILED) > CACHE_SIZE:
            _COMPILED.popitem(last=False)
    return candidate
