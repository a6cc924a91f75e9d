"""Deterministic random weights for modules built from ComfyUI's (or diffusers') own definitions.

ComfyUI's layers skip their initialisation (they expect a checkpoint), so every tensor is drawn here. Each one
comes from its own generator seeded by (seed, name), on the tensor's device: a weight does not depend on which
other weights exist. Matrices and kernels ~ N(0, 1/fan_in) (keeps activations near unit scale); 1-D weights
(norm scales) are ones; biases and other vectors are zeros.
"""
import math
import zlib

import torch


def _seed(name: str, seed: int) -> int:
    return seed * 1_000_003 + zlib.crc32(name.encode())


@torch.inference_mode()
def fill_random_(tensors: dict, seed: int, sharpen: float | None = None) -> None:
    """Draw every tensor of a state dict in place (on its own device and dtype), as ComfyUI loads weights: under
    inference mode. sharpen: factor on every cross-attention query weight (attn2.to_q); random weights otherwise
    give nearly uniform attention maps, which hide whether token attention is being steered."""
    for name, t in tensors.items():
        if t.dim() >= 2:
            gen = torch.Generator(t.device).manual_seed(_seed(name, seed))
            drawn = torch.randn(tuple(t.shape), generator=gen, device=t.device) / math.sqrt(math.prod(t.shape[1:]))
            if sharpen is not None and name.endswith("attn2.to_q.weight"):
                drawn *= sharpen
            t.copy_(drawn)
        elif t.dim() == 1 and name.endswith("weight"):
            t.fill_(1.0)
        else:
            t.zero_()


def random_state_dict(module, seed, dtype=torch.float32, prefix="", sharpen: float | None = None):
    """A full CPU state dict for `module` (which may live on the meta device), keys prefixed with `prefix`."""
    state = {name: torch.empty(tuple(ref.shape), dtype=torch.float32) for name, ref in module.state_dict().items()}
    fill_random_(state, seed, sharpen)
    return {prefix + name: t.to(dtype) for name, t in state.items()}
