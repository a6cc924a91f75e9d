"""GroupNorm that keeps a channels-last activation channels-last, for the CUDA-graph gradient pass.

PyTorch's group_norm makes a channels-last input contiguous (NCHW) on every device but the CPU, and its NCHW output
is converted back by the next channels-last convolution, forward and backward: about five copies of the activation
per GroupNorm, most of the pass's `aten::copy_` time (docs/benchmarks.md, step 11). Here the norm is computed on the
channels-last tensor as it lies, with PyTorch's float32 statistics, and compiled so that the reduction and the
elementwise work fuse (unfused it would read and write the activation as often as the copies it saves). On by
default (AANDE_NHWC_NORM=0 turns it off): about 20% off the replayed SD1.5 512x512 batch-4 pass, 5% at SDXL
1024x1024 batch 1 (docs/benchmarks.md, step 14).
"""
from __future__ import annotations

import functools
import logging

import torch
from torch.fx.experimental.proxy_tensor import get_proxy_mode
from torch.utils._python_dispatch import _get_current_dispatch_mode

from .forward_swap import wrapped_forwards

log = logging.getLogger("attend_and_excite")


def group_norm_nhwc(x: torch.Tensor, num_groups: int, weight: torch.Tensor | None = None,
                    bias: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """torch.nn.functional.group_norm for a channels-last 4-D `x`: statistics and affine in float32 (float64 for
    float64 input), the result in x's dtype and channels-last.

    The statistics are reduced per channel over H and W, where a channels-last tensor's channels lie next to each
    other in memory, and combined into each group's by the law of total variance (its channels hold equal counts).
    A first version reduced the (N, H*W, groups, C/groups) view directly: its reads come in runs of C/groups
    channels (10 at SD1.5's 320), and the compiled pass was 13% slower than PyTorch's norm with its copies at SD1.5
    batch 4 (docs/benchmarks.md, step 12)."""
    n, c, h, w = x.shape
    acc = torch.promote_types(x.dtype, torch.float32)  # PyTorch's accumulation type
    xf = x.to(acc)
    var_c, mean_c = torch.var_mean(xf, dim=(2, 3), correction=0)  # (N, C)
    mean_c, var_c = mean_c.view(n, num_groups, -1), var_c.view(n, num_groups, -1)
    mean_g = mean_c.mean(-1, keepdim=True)
    var_g = (var_c + (mean_c - mean_g) ** 2).mean(-1, keepdim=True)
    scale = torch.rsqrt(var_g + eps).expand(n, num_groups, c // num_groups).reshape(n, c)
    if weight is not None:
        scale = scale * weight.to(acc)
    shift = -mean_g.expand(n, num_groups, c // num_groups).reshape(n, c) * scale
    if bias is not None:
        shift = shift + bias.to(acc)
    return (xf * scale[:, :, None, None] + shift[:, :, None, None]).to(x.dtype)


SHAPE_LIMIT = 64  # distinct norm calls (shape, eps, ...) compiled per process; later ones keep PyTorch's norm


@functools.cache
def _compiled():
    """group_norm_nhwc compiled once per process, on the first channels-last CUDA input (never on the CPU).

    dynamic=False: one graph per input shape and eps. Dynamo recompiles a function at most 8 times by default, and a
    truncated SDXL pass alone calls its GroupNorms with 9 distinct (shape, eps) at one batch size and resolution
    (SD1.5's: 13; the benchmark's SD1.5 and SDXL at batches 1 and 4 in one process: 44), so the limit is raised,
    above SHAPE_LIMIT: past dynamo's limit the function would run eagerly, unfused, slower than PyTorch's norm.
    Default mode: the pass's own CUDA graph records the compiled kernels (reduce-overhead would nest graphs)."""
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 2 * SHAPE_LIMIT)
    return torch.compile(group_norm_nhwc, dynamic=False)


class _Compiler:
    """Whether calls may go through the compiled norm in this process, and the log lines that say so once: the
    first compilation (a pause in the first A&E run at each new size or batch), no Triton (torch.compile's GPU
    code generator, often missing on Windows), a compilation that failed, or SHAPE_LIMIT reached (a long ComfyUI
    session through many sizes and batches). In each case but the first, the calls concerned keep PyTorch's norm:
    the result is the same, only slower."""

    def __init__(self):
        self.usable: bool | None = None  # decided at the first channels-last CUDA call
        self.shapes: set[tuple] = set()  # what dynamo specialises a graph on
        self.full = False  # SHAPE_LIMIT reached (and logged)

    def check(self) -> bool:
        if self.usable is None:
            import torch.utils._triton
            self.usable = torch.utils._triton.has_triton()
            if not self.usable:
                log.info("A&E: Triton is not installed, so the CUDA-graph pass keeps PyTorch's GroupNorm (about "
                         "5-20%% slower passes; docs/benchmarks.md, step 14); AANDE_NHWC_NORM=0 skips this check")
        return self.usable

    def call(self, x, norm: torch.nn.GroupNorm, forward):
        shape = (tuple(x.shape), x.dtype, x.requires_grad, norm.num_groups, norm.eps, norm.weight is None,
                 norm.bias is None)
        if shape not in self.shapes:
            if len(self.shapes) >= SHAPE_LIMIT:
                if not self.full:
                    self.full = True
                    log.info("A&E: the compiled channels-last GroupNorm has %d shapes in this process; new sizes and "
                             "batches keep PyTorch's GroupNorm (slower passes) until ComfyUI restarts", SHAPE_LIMIT)
                return forward(x)
            if not self.shapes:
                log.info("A&E: torch.compile builds the channels-last GroupNorm of the gradient pass for each new "
                         "activation shape: the first A&E run at a new size or batch pauses for it (seconds, up to a "
                         "minute on a machine's first run); AANDE_NHWC_NORM=0 turns it off")
            self.shapes.add(shape)
        from torch._dynamo.exc import BackendCompilerFailed
        try:
            return _compiled()(x, norm.num_groups, norm.weight, norm.bias, norm.eps)
        except BackendCompilerFailed as e:
            self.usable = False
            log.warning("A&E: compiling the channels-last GroupNorm failed, so this process keeps PyTorch's "
                        "GroupNorm (slower passes, same result); AANDE_NHWC_NORM=0 skips the attempt. The error: "
                        "%s: %s", type(e.inner_exception).__name__, e.inner_exception)
            return forward(x)


_compiler = _Compiler()


def _channels_last_cuda(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.is_cuda and x.is_contiguous(memory_format=torch.channels_last)


def _nhwc_forward(norms: NHWCGroupNorms):
    """The swapped forward. Traced into the compiled pass (compiled_pass.py), channels-last input takes
    group_norm_nhwc as plain operations, which that compilation fuses with the rest of the pass. Otherwise, with
    `norms.compile_each` (read at each call: a run whose compiled pass failed turns it on while its norms are
    swapped), it goes through the norm's own compiled function, except under a TorchDispatchMode (the
    benchmark's FLOP counter, debugging tools), where it keeps the module's own forward: a compiled function called
    under one stops dynamo compiling it for any new shape in the process, whose calls then run group_norm_nhwc
    eagerly, unfused and slower than PyTorch's norm (the benchmark's later shapes in steps 12 and 13 of
    docs/benchmarks.md ran so; step 14; pytorch/pytorch#190286)."""
    def wrap(norm: torch.nn.GroupNorm, forward):
        def run(x):
            if _channels_last_cuda(x):
                if get_proxy_mode() is not None:
                    return group_norm_nhwc(x, norm.num_groups, norm.weight, norm.bias, norm.eps)
                if norms.compile_each and _get_current_dispatch_mode() is None and _compiler.check():
                    return _compiler.call(x, norm, forward)
            return forward(x)
        return run
    return wrap


class NHWCGroupNorms:
    """A model's GroupNorm modules (ComfyUI's ops subclass torch.nn.GroupNorm); while `swapped()`, their forward
    takes channels-last CUDA input through group_norm_nhwc and anything else through their own forward.
    compile_each: each norm call is compiled on its own (the pass replayed uncompiled); without it, only the trace
    of the compiled pass takes group_norm_nhwc, and its eager passes keep PyTorch's norm. Norms with ComfyUI weight
    functions (weight patches applied in its forward) are left alone."""

    def __init__(self, model: torch.nn.Module, compile_each: bool = True):
        self.norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
        self.compile_each = compile_each

    def swapped(self):
        return wrapped_forwards([m for m in self.norms
                                 if not (getattr(m, "weight_function", None) or getattr(m, "bias_function", None))],
                                _nhwc_forward(self))
