"""A&E's gradient evaluation replayed from a CUDA graph.

At SD1.5 size the truncated forward + backward is bound by the CPU launching ~1500 kernels: on an H200,
31 ms of wall time against 13 ms of GPU work (docs/benchmarks.md). Within one sampling run every evaluation
has the same shapes, conditioning and weights; only the latent and sigma change. So the first evaluation
runs eagerly (it also warms up cuDNN and cuBLAS), the second is captured, and the rest replay the capture.

Only the pack's own patches may run inside a capture: another node's patch, wrapper or hook could depend on
Python state that a replay would freeze, so with any of them the pass stays eager (see `graph_blocker`).
"""
from __future__ import annotations

import logging
import os

import torch

from ..aande_core.objective import Evaluation

log = logging.getLogger("attend_and_excite")

ENV_SWITCH = "AANDE_CUDA_GRAPH"  # "0" keeps the gradient pass eager (for debugging)


def _non_empty(value) -> bool:
    if isinstance(value, dict):
        return any(_non_empty(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return len(value) > 0
    return value is not None


def graph_blocker(device: torch.device, model_options: dict, cond: dict, controls, modules, patcher=None) -> str | None:
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
    topts = model_options.get("transformer_options", {})
    foreign = [k for k in ("patches", "patches_replace", "wrappers", "callbacks") if _non_empty(topts.get(k))]
    foreign += [k for k in ("model_function_wrapper",) if model_options.get(k) is not None]
    foreign += [k for k in ("hooks", "gligen") if cond.get(k) is not None]
    if foreign:
        return f"other nodes patch the model ({', '.join(foreign)})"
    is_dynamic = getattr(patcher, "is_dynamic", None)
    if callable(is_dynamic) and is_dynamic():
        return "ComfyUI streams this model's weights (dynamic VRAM)"
    for module in modules:
        if getattr(module, "model_lowvram", False) or any(p.device.type != "cuda" for p in module.parameters()):
            return "the model is partly offloaded to the CPU (lowvram)"
    return None


class GraphedEvaluation:
    """evaluate(z, scale, sigma) -> Evaluation, eager on the first call and replayed from a graph after.

    The graph and its memory pool live until `release()` (the end of the A&E phase). A capture that fails
    (an unforeseen host synchronisation or transfer in the forward) is logged and the run goes on eagerly.
    """

    def __init__(self, evaluate):
        self.evaluate = evaluate
        self.calls = self.replays = 0
        self.graph = self.inputs = self.outputs = None
        self.failed = False

    def __call__(self, z: torch.Tensor, scale: torch.Tensor, sigma: torch.Tensor) -> Evaluation:
        self.calls += 1
        if self.graph is None and (self.calls == 1 or self.failed or not self._capture(z, scale, sigma)):
            return self.evaluate(z, scale, sigma)
        for static, value in zip(self.inputs, (z, scale, sigma)):
            static.copy_(value)
        self.graph.replay()
        self.replays += 1
        out = self.outputs  # overwritten by the next replay: the caller keeps copies
        return Evaluation(out.loss.clone(), out.grad.clone(), out.token_maps.clone(), out.subject_maps.clone())

    def _capture(self, z, scale, sigma) -> bool:
        inputs = [t.detach().clone() for t in (z, scale, sigma)]
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                outputs = self.evaluate(*inputs)
        except Exception as e:  # noqa: BLE001  any capture failure leaves the eager pass, which is correct
            self.failed = True
            log.warning("A&E: the gradient pass could not be captured in a CUDA graph (%s: %s); it runs eagerly",
                        type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            return False
        self.graph, self.inputs, self.outputs = graph, inputs, outputs
        return True

    def release(self):
        self.graph = self.inputs = self.outputs = None
