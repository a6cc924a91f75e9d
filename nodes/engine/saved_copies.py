"""Autograd through other nodes' patches that write to tensors in place.

ComfyUI's block patches are written for inference: FreeU, for one, scales half the channels of the UNet's hidden
state in place, after reading that state for its scale. In a gradient pass autograd has saved such a tensor (or a
view of it) for the backward, which then refuses to run ("modified by an inplace operation"). So in a pass with
such patches a saved tensor is copied just before anything writes to its memory, and the backward reads the copy.

torch.autograd.graph.allow_mutation_on_saved_tensors does the same, but finds a saved tensor again by its Python
id, its address and its version counter. Once a tensor it copied is freed, CPython and the allocator hand its id
and its address to the next tensor, version 0 like it; when that one is saved, the backward gets the old copy
instead: a GroupNorm backward that failed on a wrong shape in our CPU suite, or, at the same shape, a wrong
gradient and no error (`tests/test_saved_copies.py` shows it). Here a saved tensor is known by its storage's
address, and no other storage can have that address while autograd keeps the tensor (which holds its storage).
"""
from __future__ import annotations

import weakref
from collections import defaultdict
from contextlib import contextmanager

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .aten_writes import written_arguments


class _Saved:
    """What autograd keeps for one saved tensor: the tensor, or its copy once something wrote to its storage."""
    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor


def _storage(t: torch.Tensor) -> int:
    """The address of a tensor's memory, shared by all its views (0 for an empty one)."""
    return t.untyped_storage().data_ptr()


class _CopyBeforeWrite(TorchDispatchMode):
    """Sees every operator of the pass, forward and backward; before one writes to the storage of a saved tensor,
    that tensor is replaced by its copy."""

    def __init__(self):
        super().__init__()
        # storage address -> the saved tensors on it, not yet copied, as long as autograd keeps them
        self.uncopied: defaultdict[int, weakref.WeakSet] = defaultdict(weakref.WeakSet)

    def pack(self, tensor: torch.Tensor) -> _Saved:
        saved = _Saved(tensor)
        self.uncopied[_storage(tensor)].add(saved)
        return saved

    @staticmethod
    def unpack(saved: _Saved) -> torch.Tensor:
        return saved.tensor

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for t in written_arguments(func, args, kwargs):
            if not isinstance(t, torch.Tensor):
                continue
            for saved in list(self.uncopied.pop(_storage(t), ())):
                saved.tensor = saved.tensor.clone()  # the mode is off inside its own handler: a plain clone
        return func(*args, **kwargs)


@contextmanager
def saved_tensors_copied_before_write():
    """Forward and backward inside: in-place writes to tensors autograd saved leave the backward correct."""
    mode = _CopyBeforeWrite()
    with torch.autograd.graph.saved_tensors_hooks(mode.pack, mode.unpack), mode:
        yield
