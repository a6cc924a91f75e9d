"""The memory-saving gradient pass: the UNet's residual blocks and the transformer blocks' feed-forward layers
recompute their activations in the backward instead of keeping them (activation checkpointing,
torch.utils.checkpoint, non-reentrant).

The backward of A&E's truncated forward needs every activation up to the last layer the loss reads; at SDXL's
1024x1024 those held 3.6 GiB on top of plain sampling's 5.3 GiB (docs/benchmarks.md). Recomputing the residual
blocks alone was not enough (the pass still did not fit 8 GiB): most of SDXL's activations are in its 70
transformer blocks, and in each of them the gated feed-forward keeps about 12 times its input's size (the
projection's output, the gate, the product). So the feed-forwards keep only their input too. The transformer
blocks' attention stays as it is: the attention capture reads the cross-attention inside the forward, and the
self-attention (scaled dot-product attention) keeps little besides its q, k and v. Each recomputed layer costs
one more forward of it per pass.
"""
from __future__ import annotations

from torch.utils.checkpoint import checkpoint

from .. import compat
from .forward_swap import wrapped_forwards


def recomputed_activations(diffusion_model):
    """A context manager: while active, every residual block and transformer feed-forward of `diffusion_model`
    runs under activation checkpointing; each module's own forward is put back afterwards."""
    modules = compat.residual_blocks(diffusion_model) + compat.feed_forwards(diffusion_model)
    return wrapped_forwards(modules, _checkpointed)


def _checkpointed(module, forward):
    def run(*args, **kwargs):
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return run
