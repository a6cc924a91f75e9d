"""The NHWC GroupNorm of the CUDA-graph gradient pass (nodes/engine/nhwc_norm.py), on the CPU: the function, eager
and uncompiled, computes torch.nn.functional.group_norm and its gradients and stays channels-last; the swap puts
every module's forward back after a pass and after an error; AANDE_NHWC_NORM decides whether a graphed pass swaps,
and CPU input never reaches the compiled function. The compiled kernels and their speed need a GPU:
`bench.gpu_checks --nhwc-norm`, `bench.ae_bench --nhwc-norm`."""
import pytest
import torch
import torch.nn.functional as F

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


@pytest.mark.parametrize("switch", ["0", "1"], ids=["switch-off", "switch-on"])
def test_the_switch_decides_whether_a_graphed_pass_swaps_its_group_norms(switch, monkeypatch):
    monkeypatch.setattr(gp, "graph_blocker", lambda *args: None)  # as on a GPU: a channels-last pass, graphed
    monkeypatch.setattr(nhwc_norm, "_compiled", _never_compile)
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
    if switch == "1":  # inside the gradient passes, not in the sampler's own model calls
        assert any(swapped) and not all(swapped)
    else:
        assert not any(swapped)
    assert all("forward" not in m.__dict__ for m in norms)
