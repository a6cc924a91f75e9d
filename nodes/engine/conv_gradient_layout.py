"""In a traced channels-last pass, every convolution's incoming gradient asked for in NHWC.

With channels-last weights (inference_weights.py) cuDNN runs each convolution's backward in NHWC and ATen's
convolution_backward copies a gradient that arrives in another layout into NHWC inside its call. In the UNet's
backward such gradients are slices of a skip concatenation's gradient: strided in the channels, contiguous in
neither layout. In the compiled pass those copies were all that was left of the layout conversions: 23 per pass,
0.36 ms of SD1.5 512x512 batch 4's 12.7 ms (docs/benchmarks.md, step 17). Inductor does not generate the backward
of a convolution; it calls ATen's with the strides the traced graph gave its operands, so it cannot place the copy
itself. An explicit channels-last clone of such a gradient in the traced graph is an operation Inductor generates:
it writes the gradient in NHWC from the kernel that sums it, and the convolution reads it as it is.
"""
from __future__ import annotations

import torch
import torch.fx

_BACKWARD = torch.ops.aten.convolution_backward.default
_CLONE = torch.ops.aten.clone.default


def _channels_last(value) -> bool:
    return value.dim() != 4 or value.is_contiguous(memory_format=torch.channels_last)


def channels_last_conv_gradients(gm: torch.fx.GraphModule) -> int:
    """Gives every convolution backward of gm (traced with values: node.meta["val"]) whose incoming gradient is not
    channels-last a channels-last clone of it instead, one clone per gradient, in place; returns how many
    gradients were cloned."""
    graph = gm.graph
    clones: dict[torch.fx.Node, torch.fx.Node] = {}
    for node in list(graph.nodes):
        if node.target is not _BACKWARD:
            continue
        grad = node.args[0]
        value = grad.meta.get("val")
        if not isinstance(value, torch.Tensor) or _channels_last(value):
            continue
        if grad not in clones:
            with graph.inserting_before(node):
                clone = clones[grad] = graph.call_function(_CLONE, (grad,), {"memory_format": torch.channels_last})
            clone.meta["val"] = value.clone(memory_format=torch.channels_last)
        node.replace_input_with(grad, clones[grad])
    if clones:
        graph.lint()
        gm.recompile()
    return len(clones)
