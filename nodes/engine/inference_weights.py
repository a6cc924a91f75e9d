"""Autograd through weights that ComfyUI loaded as inference tensors, without copying them.

ComfyUI loads models under torch.inference_mode(); autograd refuses to save such tensors for backward,
and cloning the weights would double their memory. A normal tensor that shares an inference tensor's
storage is accepted, so during a gradient pass the parameters are swapped for such aliases and the
original Parameter objects are put back afterwards.

With channels_last, the convolution kernels (4-D weights) are swapped for channels-last copies instead: cuDNN's
fp16 convolutions run in NHWC, and with NCHW weights and activations it converts both at every call (41% of a
replayed SD1.5 gradient pass's GPU time, docs/benchmarks.md). The copies cost the kernels' memory once per run;
they are only made where the weights stay put for the whole run (the CUDA-graph case), since a copy would not
see a weight ComfyUI changes in place.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch


def _alias(t: torch.Tensor) -> torch.nn.Parameter:
    with torch.inference_mode(False):
        plain = torch.empty(0, dtype=t.dtype, device=t.device).set_(t.untyped_storage(), t.storage_offset(),
                                                                    t.size(), t.stride())
        return torch.nn.Parameter(plain, requires_grad=False)


def _channels_last_copy(t: torch.Tensor) -> torch.nn.Parameter:
    with torch.inference_mode(False):
        copy = torch.empty_like(t, memory_format=torch.channels_last)
        copy.copy_(t)
        return torch.nn.Parameter(copy, requires_grad=False)


class WeightAliases:
    """The stand-ins of some modules' inference-tensor parameters, made once and reused for every gradient pass
    of a sampling run (rebuilt for a parameter that ComfyUI replaced or moved in between)."""

    def __init__(self, *modules: torch.nn.Module, channels_last: bool = False):
        self.channels_last = channels_last
        self.entries: list[list] = []  # [owner module, name, original parameter, stand-in, original's data_ptr]
        for module in modules:
            for mod in module.modules():
                for name, p in mod._parameters.items():
                    if p is not None and p.is_inference():
                        self.entries.append([mod, name, p, self._stand_in(p), p.data_ptr()])

    def _stand_in(self, p: torch.Tensor) -> torch.Tensor:
        if not p.is_inference():
            return p
        if self.channels_last and p.dim() == 4:
            return _channels_last_copy(p)
        return _alias(p)

    def release(self) -> None:
        """Drop the stand-ins (the channels-last copies are the kernels' size); no pass may run after."""
        self.entries = []

    @contextmanager
    def swapped(self):
        done = []
        try:
            for entry in self.entries:
                mod, name, original, stand_in, source = entry
                current = mod._parameters[name]
                if current is not original or current.data_ptr() != source:
                    entry[2], entry[3], entry[4] = current, self._stand_in(current), current.data_ptr()
                    stand_in = entry[3]
                mod._parameters[name] = stand_in
                done.append(entry)
            yield
        finally:
            for mod, name, original, _, _ in done:
                mod._parameters[name] = original
