"""Counts UNet passes with module hooks: how many forwards started, how many reached the output layer, how many
ran with autograd on (A&E's gradient passes) and how many backward passes went through the input layer."""
from __future__ import annotations

import torch
from torch.fx.experimental.proxy_tensor import get_proxy_mode


class PassCounter:
    """Hooks on a UNet's first layer (conv_in) and last layer (out / conv_out).

    A forward that starts but never reaches the last layer is a truncated one (A&E stops after the last layer
    its loss reads). Backward passes are counted by a hook on the first layer's output, which every backward
    that reaches the latent runs through once. Hooks that fire while make_fx traces the pass (compile_pass,
    nodes/engine/compiled_pass.py) count nothing: that runs the pass's Python once to record it, not a pass of the
    run.
    """

    def __init__(self, first: torch.nn.Module, last: torch.nn.Module):
        self.handles = [first.register_forward_pre_hook(self._started), first.register_forward_hook(self._first_done),
                        last.register_forward_hook(self._finished)]
        self.reset()

    def reset(self):
        self.started = self.full = self.grad = self.backward = 0
        self.batches: set[int] = set()
        self.grad_batches: set[int] = set()

    def _started(self, module, args):
        if get_proxy_mode() is not None:
            return
        self.started += 1
        self.batches.add(int(args[0].shape[0]))
        if torch.is_grad_enabled():
            self.grad += 1
            self.grad_batches.add(int(args[0].shape[0]))

    def _first_done(self, module, args, out):
        if out.requires_grad and get_proxy_mode() is None:
            out.register_hook(self._backward)

    def _backward(self, grad):
        self.backward += 1

    def _finished(self, module, args, out):
        if get_proxy_mode() is None:
            self.full += 1

    def snapshot(self) -> dict:
        return {"forwards": self.started, "full": self.full, "grad": self.grad,
                "truncated": self.started - self.full, "backward": self.backward,
                "batches": sorted(self.batches), "grad_batches": sorted(self.grad_batches)}

    def remove(self):
        for handle in self.handles:
            handle.remove()
