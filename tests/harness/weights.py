"""Deterministic random weights for modules built from ComfyUI's own definitions.

ComfyUI's layers skip their initialisation (they expect a checkpoint), so every tensor is drawn here. Each one
comes from its own generator seeded by (seed, name): a weight does not depend on which other weights exist.
"""
import math
import zlib

import torch


def random_tensor(name, shape, seed):
    """Matrices and kernels ~ N(0, 1/fan_in) (keeps activations near unit scale); 1-D weights (norm scales) are
    ones; biases and other vectors are zeros."""
    if len(shape) >= 2:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
        return torch.randn(tuple(shape), generator=gen) / math.sqrt(math.prod(shape[1:]))
    if len(shape) == 1 and name.endswith("weight"):
        return torch.ones(tuple(shape))
    return torch.zeros(tuple(shape))


def random_state_dict(module, seed, dtype=torch.float32, prefix=""):
    """A full state dict for `module` (which may live on the meta device), keys prefixed with `prefix`."""
    return {prefix + name: random_tensor(name, ref.shape, seed).to(dtype)
            for name, ref in module.state_dict().items()}
