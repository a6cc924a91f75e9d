"""Autograd through weights that ComfyUI loaded as inference tensors, without copying them.

ComfyUI loads models under torch.inference_mode(); autograd refuses to save such tensors for backward,
and cloning the weights would double their memory. A normal tensor that shares an inference tensor's
storage is accepted, so the parameters are swapped for such aliases during a gradient pass and the
original Parameter objects are put back afterwards.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch


def _alias(t: torch.Tensor) -> torch.Tensor:
    return torch.empty(0, dtype=t.dtype, device=t.device).set_(t.untyped_storage(), t.storage_offset(),
                                                               t.size(), t.stride())


@contextmanager
def autograd_safe_weights(module: torch.nn.Module):
    swapped = []
    try:
        with torch.inference_mode(False):
            for mod in module.modules():
                for name, p in mod._parameters.items():
                    if p is not None and p.is_inference():
                        mod._parameters[name] = torch.nn.Parameter(_alias(p), requires_grad=False)
                        swapped.append((mod, name, p))
        yield
    finally:
        for mod, name, p in reversed(swapped):
            mod._parameters[name] = p
