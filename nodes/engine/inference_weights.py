"""Autograd through weights that ComfyUI loaded as inference tensors, without copying them.

ComfyUI loads models under torch.inference_mode(); autograd refuses to save such tensors for backward,
and cloning the weights would double their memory. A normal tensor that shares an inference tensor's
storage is accepted, so during a gradient pass the parameters are swapped for such aliases and the
original Parameter objects are put back afterwards.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch


def _alias(t: torch.Tensor) -> torch.nn.Parameter:
    with torch.inference_mode(False):
        plain = torch.empty(0, dtype=t.dtype, device=t.device).set_(t.untyped_storage(), t.storage_offset(),
                                                                    t.size(), t.stride())
        return torch.nn.Parameter(plain, requires_grad=False)


class WeightAliases:
    """The aliases of some modules' inference-tensor parameters, made once and reused for every gradient pass
    of a sampling run (rebuilt for a parameter that ComfyUI replaced or moved in between)."""

    def __init__(self, *modules: torch.nn.Module):
        self.entries: list[list] = []  # [owner module, name, original parameter, alias]
        for module in modules:
            for mod in module.modules():
                for name, p in mod._parameters.items():
                    if p is not None and p.is_inference():
                        self.entries.append([mod, name, p, _alias(p)])

    @contextmanager
    def swapped(self):
        done = []
        try:
            for entry in self.entries:
                mod, name, original, alias = entry
                current = mod._parameters[name]
                if current is not original or alias.data_ptr() != current.data_ptr():
                    entry[2] = original = current
                    entry[3] = alias = _alias(current) if current.is_inference() else current
                mod._parameters[name] = alias
                done.append(entry)
            yield
        finally:
            for mod, name, original, _ in done:
                mod._parameters[name] = original
