"""Modules whose forward is wrapped for the length of a gradient pass: the memory-saving pass (recompute.py) and
the NHWC GroupNorm (nhwc_norm.py) change how some UNet modules run while the pass runs, and each module's own
forward must be back afterwards, after an error too, without touching the model's other state."""
from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def wrapped_forwards(modules, wrap):
    """While active, each module's forward is wrap(module, its own forward): an instance attribute `forward` that
    someone else set, else the class's. On exit that attribute is put back, or removed where there was none."""
    saved = [(module, module.__dict__.get("forward")) for module in modules]
    try:
        for module, own in saved:
            module.forward = wrap(module, own or type(module).forward.__get__(module))
        yield
    finally:
        for module, own in saved:
            if own is None:
                module.__dict__.pop("forward", None)
            else:
                module.forward = own
