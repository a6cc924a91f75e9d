"""In a traced channels-last pass, every convolution operand asked for in NHWC.

With channels-last weights (inference_weights.py) cuDNN computes each convolution in NHWC, and ATen copies an
operand that arrives in another layout inside the convolution's call. After the compiled pass had fused every
other layout conversion, those copies were what was left: 23 per pass, 0.36 ms of SD1.5 512x512 batch 4's
12.7 ms (docs/benchmarks.md, steps 17 and 18). Two kinds of operand cause them:
- the slices of a skip concatenation's gradient, strided in the channels (contiguous in neither layout), which
  ATen copies into NHWC before the convolution's backward;
- the input of a transformer's `proj_out` convolution (SD1.x, SD2.x), which ComfyUI's SpatialTransformer makes
  NCHW-contiguous (`.movedim(3, 1).contiguous()`). No copy was measured inside the forward's convolution, but
  cuDNN's backward first converts the incoming gradient to the layout of the forward's input (NCHW) and then
  back to NHWC for its kernel: two copies of an NHWC gradient per such convolution, 18 in SD1.5's pass. SDXL's
  transformers project with linear layers but return the same NCHW tensor, and their residual add keeps it NCHW,
  so there the next block's first convolution gets an NCHW input.
Inductor does not generate convolutions or their backward; it calls ATen's with the strides the traced graph gave
their operands, so it cannot place these copies itself. An explicit channels-last clone of such an operand in the
traced graph is an operation Inductor generates: it writes the value in NHWC from the kernel that computes it (the
NCHW copy ComfyUI asked for is then computed by nobody), and each convolution reads it as it is. The values are
unchanged: only where they lie in memory.
"""
from __future__ import annotations

import torch
import torch.fx

_CLONE = torch.ops.aten.clone.default
# per operation, the positions of the operands it computes in the weights' layout
_OPERANDS = {torch.ops.aten.convolution.default: (0,),               # input
             torch.ops.aten.convolution_backward.default: (0, 1)}  # incoming gradient, the forward's input


def _channels_last(value) -> bool:
    return value.dim() != 4 or value.is_contiguous(memory_format=torch.channels_last)


def channels_last_conv_operands(gm: torch.fx.GraphModule) -> int:
    """Gives every convolution and convolution backward of gm (traced with values: node.meta["val"]) a
    channels-last clone of each operand that is not channels-last, one clone per value, in place; returns how many
    values were cloned."""
    graph = gm.graph
    clones: dict[torch.fx.Node, torch.fx.Node] = {}
    for node in list(graph.nodes):
        for i in _OPERANDS.get(node.target, ()):
            operand = node.args[i]
            value = operand.meta.get("val")
            if not isinstance(value, torch.Tensor) or _channels_last(value):
                continue
            if operand not in clones:  # before its first convolution: the graph is in order of execution
                with graph.inserting_before(node):
                    clone = graph.call_function(_CLONE, (operand,), {"memory_format": torch.channels_last})
                clone.meta["val"] = value.clone(memory_format=torch.channels_last)
                clones[operand] = clone
            node.update_arg(i, clones[operand])
    if clones:
        graph.lint()
        gm.recompile()
    return len(clones)
