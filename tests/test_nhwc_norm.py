"""The NHWC GroupNorm of the CUDA-graph gradient pass (nodes/engine/nhwc_norm.py), on the CPU: the function, eager
and uncompiled, computes torch.nn.functional.group_norm and its gradients and stays channels-last; the swap puts
every module's forward back after a pass and after an error; a graphed pass swaps unless AANDE_NHWC_NORM=0, and CPU
input never reaches the compiled function; which calls go through the compiled function (not under a
TorchDispatchMode, not without Triton, not after a failed compilation) and what the log says. The compiled kernels
and their speed need a GPU: `bench.gpu_checks`, `bench.ae_bench`."""
import logging

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from harness.ae_run import run_node
from harness.models import make_conditioning, make_model

from aande_pack.nodes.engine import gradient_pass as gp
from aande_pack.nodes.engine import nhwc_norm
from aande_pack.nodes.engine.nhwc_norm import NHWCGroupNorms, group_norm_nhwc

TOLERANCE = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-5),
             torch.bfloat16: dict(rtol=2e-2, atol=2e-2)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=["fp32", "bf16", "fp64"])
@pytest.mark.parametrize("shape, groups", [((2, 64, 8, 8), 32), ((1, 32, 5, 7), 32), ((2, 12, 6, 6), 3)],
                         ids=["32-groups", "one-channel-groups", "3-groups"])
def test_nhwc_group_norm_equals_group_norm_with_its_gradients_and_stays_channels_last(shape, groups, dtype):
    gen = torch.Generator().manual_seed(0)
    x = (3 * torch.randn(shape, generator=gen) + 1).to(dtype).contiguous(memory_format=torch.channels_last)
    weight, bias = (torch.randn(shape[1], generator=gen).to(dtype) for _ in range(2))
    grad_out = torch.randn(shape, generator=gen).to(dtype)
    results = []
    for fn in (group_norm_nhwc, F.group_norm):
        xi, wi, bi = (t.clone().requires_grad_(True) for t in (x, weight, bias))
        y = fn(xi, groups, wi, bi, 1e-6)
        y.backward(grad_out)
        results.append((y, xi.grad, wi.grad, bi.grad))
    ours, pytorch = results
    assert ours[0].dtype == dtype and ours[0].is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(ours, pytorch):
        torch.testing.assert_close(a, b, **TOLERANCE[dtype])
    torch.testing.assert_close(group_norm_nhwc(x, groups), F.group_norm(x, groups), **TOLERANCE[dtype])  # no affine


def _never_compile():
    raise AssertionError("the compiled NHWC GroupNorm was called on the CPU")


def test_the_swap_puts_every_forward_back_after_a_pass_and_after_an_error(monkeypatch):
    monkeypatch.setattr(nhwc_norm, "_compiled", _never_compile)
    unet = make_model("sd1", seed=0).model.diffusion_model
    swap = NHWCGroupNorms(unet)
    assert swap.norms and all(type(m).__module__ == "comfy.ops" for m in swap.norms)  # ComfyUI's GroupNorm ops
    own = swap.norms[0].forward = type(swap.norms[0]).forward.__get__(swap.norms[0])  # a forward set by someone
    x = torch.randn(2, swap.norms[1].num_channels, 4, 4)

    def put_back():
        return swap.norms[0].forward is own and all("forward" not in m.__dict__ for m in swap.norms[1:])

    with swap.swapped(), torch.no_grad():
        assert all(m.forward is not own and "forward" in m.__dict__ for m in swap.norms)
        norm = swap.norms[1]
        expected = F.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps)
        for layout in (torch.contiguous_format, torch.channels_last):  # CPU input: the module's own forward
            torch.testing.assert_close(norm(x.contiguous(memory_format=layout)), expected)
    assert put_back()
    with pytest.raises(RuntimeError, match="inside the pass"), swap.swapped():
        raise RuntimeError("inside the pass")
    assert put_back()


@pytest.mark.parametrize("switch", ["0", "1", None], ids=["switch-off", "switch-on", "default"])
def test_the_switch_decides_whether_a_graphed_pass_swaps_its_group_norms(switch, monkeypatch):
    monkeypatch.setattr(gp, "graph_blocker", lambda *args: None)  # as on a GPU: a channels-last pass, graphed
    monkeypatch.setattr(nhwc_norm, "_compiled", _never_compile)
    if switch is None:
        monkeypatch.delenv(gp.NHWC_NORM_SWITCH, raising=False)
    else:
        monkeypatch.setenv(gp.NHWC_NORM_SWITCH, switch)
    model = make_model("sd1", seed=0, sharpen=6.5)
    norms = [m for m in model.model.diffusion_model.modules() if isinstance(m, torch.nn.GroupNorm)]
    swapped = []  # per GroupNorm call: whether its forward was the swapped one
    hooks = [m.register_forward_pre_hook(lambda m, args: swapped.append("forward" in m.__dict__)) for m in norms]
    try:
        _, record = run_node(model, make_conditioning("sd1", 1), make_conditioning("sd1", 2),
                             {"samples": torch.zeros(1, 4, 16, 16)}, steps=3, token_indices="2,5", thresholds="")
    finally:
        for hook in hooks:
            hook.remove()
    assert record.gradient_passes > 1  # the first pass eager, then a capture (which fails on the CPU), eager again
    if switch != "0":  # inside the gradient passes, not in the sampler's own model calls
        assert any(swapped) and not all(swapped)
    else:
        assert not any(swapped)
    assert all("forward" not in m.__dict__ for m in norms)


class _PassThrough(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


@pytest.fixture
def gpu_like(monkeypatch, caplog):
    """A swapped SD1 GroupNorm whose channels-last CPU input counts as CUDA input, a fresh compiler state, Triton
    present, and a stand-in for the compiled function that records its calls (returning the NHWC norm's result)."""
    monkeypatch.setattr(nhwc_norm, "_channels_last_cuda", lambda x: x.is_contiguous(memory_format=torch.channels_last))
    monkeypatch.setattr(nhwc_norm, "_compiler", nhwc_norm._Compiler())
    monkeypatch.setattr(torch.utils._triton, "has_triton", lambda: True)
    calls = []

    def compiled(x, *args):
        calls.append(tuple(x.shape))
        return group_norm_nhwc(x, *args)
    monkeypatch.setattr(nhwc_norm, "_compiled", lambda: compiled)
    caplog.set_level(logging.INFO, logger="attend_and_excite")
    swap = NHWCGroupNorms(make_model("sd1", seed=0).model.diffusion_model)
    norm = swap.norms[1]
    x = torch.randn(2, norm.num_channels, 4, 4).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():  # ComfyUI's weights are inference tensors
        expected = F.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps)
    return swap, norm, x, expected, calls


def test_channels_last_gpu_input_goes_through_the_compiled_norm_and_the_first_compilation_is_logged_once(
        gpu_like, caplog):
    swap, norm, x, expected, calls = gpu_like
    with swap.swapped(), torch.no_grad():
        for _ in range(2):
            torch.testing.assert_close(norm(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(norm(x.contiguous()), expected)  # NCHW input: the module's own forward
    assert calls == [tuple(x.shape)] * 2
    assert sum("torch.compile builds" in r.getMessage() for r in caplog.records) == 1


def test_under_a_torch_dispatch_mode_the_swapped_norm_never_calls_the_compiled_function(gpu_like):
    # a compiled function called under a dispatch mode (FlopCounterMode) stops dynamo compiling it for new shapes
    swap, norm, x, expected, calls = gpu_like
    with swap.swapped(), torch.no_grad(), _PassThrough():
        torch.testing.assert_close(norm(x), expected)
    assert calls == []
    with swap.swapped(), torch.no_grad():  # the mode is gone: compiled again
        norm(x)
    assert calls == [tuple(x.shape)]


def test_without_triton_the_pass_keeps_pytorchs_norm_and_says_so(gpu_like, monkeypatch, caplog):
    swap, norm, x, expected, calls = gpu_like
    monkeypatch.setattr(torch.utils._triton, "has_triton", lambda: False)
    with swap.swapped(), torch.no_grad():
        torch.testing.assert_close(norm(x), expected)
        norm(x)
    assert calls == []
    assert sum("Triton is not installed" in r.getMessage() for r in caplog.records) == 1


def test_a_failed_compilation_is_logged_once_and_the_process_keeps_pytorchs_norm(gpu_like, monkeypatch, caplog):
    from torch._dynamo.exc import BackendCompilerFailed
    swap, norm, x, expected, calls = gpu_like

    def failing(x, *args):
        calls.append("tried")
        raise BackendCompilerFailed(None, RuntimeError("no C compiler found"), None)
    monkeypatch.setattr(nhwc_norm, "_compiled", lambda: failing)
    with swap.swapped(), torch.no_grad():
        torch.testing.assert_close(norm(x), expected)
        torch.testing.assert_close(norm(x), expected)
    assert calls == ["tried"]  # not tried again
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "compiling the channels-last GroupNorm failed" in warnings[0].getMessage()


def test_past_the_shape_limit_new_shapes_keep_pytorchs_norm_and_known_ones_stay_compiled(gpu_like, monkeypatch,
                                                                                       caplog):
    swap, norm, x, expected, calls = gpu_like
    monkeypatch.setattr(nhwc_norm, "SHAPE_LIMIT", 2)
    sizes = [4, 6, 8, 10, 4]  # the last is a known shape again
    with swap.swapped(), torch.no_grad():
        for side in sizes:
            xi = torch.randn(2, norm.num_channels, side, side).contiguous(memory_format=torch.channels_last)
            torch.testing.assert_close(norm(xi), F.group_norm(xi, norm.num_groups, norm.weight, norm.bias, norm.eps),
                                       rtol=1e-5, atol=1e-5)
    assert [shape[2] for shape in calls] == [4, 6, 4]
    assert sum("GroupNorm has 2 shapes" in r.getMessage() for r in caplog.records) == 1
