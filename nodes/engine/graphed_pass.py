"""A&E's gradient pass replayed from a CUDA graph.

At SD1.5 size the truncated forward + backward is bound by the CPU launching ~1500 kernels: on an H200,
31 ms of wall time against 13 ms of GPU work (docs/benchmarks.md). Within one sampling run every pass
has the same shapes, conditioning and weights; only the latent and sigma change. So the first pass
runs eagerly (it also warms up cuDNN and cuBLAS), the second is captured, and the rest replay the capture.

Only the pack's own patches may run inside a capture: another node's patch, wrapper or hook could depend on
Python state that a replay would freeze, so with any of them the pass stays eager (see `graph_blocker`).
"""
from __future__ import annotations

import logging
import os

import torch

from ...aande_core.objective import PassResult
from .. import compat

log = logging.getLogger("attend_and_excite")

ENV_SWITCH = "AANDE_CUDA_GRAPH"  # "0" keeps the gradient pass eager (for debugging)


def graph_blocker(device: torch.device, model_options: dict, cond: dict, controls, model: torch.nn.Module) -> str | None:
    """Why the gradient pass of this run cannot be replayed from a CUDA graph, or None if it can.

    A graph holds the addresses of the weights it read, so the weights must stay where they are for the whole run:
    not offloaded (lowvram) and not streamed by a dynamic-VRAM patcher (newer ComfyUI).
    """
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return f"{ENV_SWITCH}=0"
    if device.type != "cuda":
        return f"the model runs on {device.type}, not CUDA"
    if controls:
        return "a ControlNet or T2I-Adapter runs in the gradient pass"
    foreign = compat.foreign_patches(model_options, cond)
    if foreign:
        return f"other nodes patch the model ({', '.join(foreign)})"
    streaming = compat.weight_streaming(model)
    if streaming is None and any(p.device.type != "cuda" for p in model.parameters()):
        streaming = "the model is partly offloaded to the CPU (lowvram)"
    return streaming


class GraphedPass:
    """pass_(z, sigma) -> PassResult, eager on the first call and replayed from a graph after.

    compile: None, or compile(z, sigma, expected) -> the compiled pass, checked to give `expected` (the first,
    eager, call's result) at that call's z and sigma (compiled_pass.compiled_pass). Given, the second call compiles
    the pass and the graph captures the compiled program; a compilation that fails is logged and the graph captures
    the pass as it runs. The graph and its memory pool live until `release()` (the end of the A&E phase). A capture
    that fails (an unforeseen host synchronisation or transfer in the forward) is logged and the run goes on eagerly.
    uncompiled: called when the run gives up the compiled pass (its compilation failed, or its capture did), before
    the eager pass runs again: the eager pass of a run that asked for compilation may need setting up as in a run
    that did not (GradientPass compiles its GroupNorms one by one then). After a failed compilation the call runs
    the eager pass uncaptured and the next call captures it, so that whatever that set-up compiles on first use is
    compiled outside the capture, as the first call does for a run without compilation.
    """

    def __init__(self, eager, compile=None, uncompiled=None):
        self.eager, self.compile, self.uncompiled = eager, compile, uncompiled or (lambda: None)
        self.calls = self.replays = 0
        self.graph = self.inputs = self.outputs = self.captured = self.first = None
        self.failed = False
        self.compiled = False  # whether the graph replays the compiled pass

    def __call__(self, z: torch.Tensor, sigma: torch.Tensor) -> PassResult:
        self.calls += 1
        if self.calls == 1:
            result = self.eager(z, sigma)
            if self.compile is not None:  # what the compiled pass must give at these inputs
                self.first = (z.detach().clone(), sigma.detach().clone(), _copy(result))
            return result
        if self.graph is None and (self.failed or not self._capture(z, sigma)):
            return self.eager(z, sigma)
        for static, value in zip(self.inputs, (z, sigma)):
            static.copy_(value)
        self.graph.replay()
        self.replays += 1
        return _copy(self.outputs)  # overwritten by the next replay: the caller keeps copies

    def _compiled(self):
        """The compiled pass, or the eager one if compiling it fails."""
        first, self.first = self.first, None
        try:
            compiled = self.compile(*first)
        except Exception as e:  # noqa: BLE001  any failure leaves the uncompiled pass, which is correct
            log.warning("A&E: the gradient pass could not be compiled (%s); the CUDA graph replays it uncompiled "
                        "(slower, the same result)", _summary(e))
            self.uncompiled()
            return self.eager
        self.compiled = True
        return compiled

    def _capture(self, z, sigma) -> bool:
        """Capture the pass (compiled first, where asked) in the graph; False where it is not captured by this call."""
        if self.captured is None:
            self.captured = self._compiled() if self.compile is not None else self.eager
            if self.compile is not None and not self.compiled:
                return False  # the uncompiled pass runs once before its capture: see the class's docstring
        run, inputs = self.captured, [t.detach().clone() for t in (z, sigma)]
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                outputs = run(*inputs)
        except Exception as e:  # noqa: BLE001  any capture failure leaves the eager pass, which is correct
            if self.compiled:
                self.uncompiled()
            self.failed, self.compiled, self.captured = True, False, None
            log.warning("A&E: the gradient pass could not be captured in a CUDA graph (%s); it runs eagerly",
                        _summary(e))
            return False
        # the compiled pass (`captured`) holds the tensors the graph reads (weights, conditioning): kept as long as
        # the graph
        self.graph, self.inputs, self.outputs = graph, inputs, outputs
        return True

    def release(self):
        self.graph = self.inputs = self.outputs = self.captured = self.first = None


def _copy(result: PassResult) -> PassResult:
    return PassResult(result.loss.clone(), result.grad.clone(), result.token_maps.clone(), result.subject_maps.clone())


def _summary(e: Exception) -> str:
    """The exception's type and its message's first line, for a one-line warning."""
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
