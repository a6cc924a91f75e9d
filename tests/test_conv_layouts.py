"""The traced channels-last pass asks for NHWC operands at its convolutions (nodes/engine/conv_layouts.py): on
small graphs shaped like the UNet's, the slice of a skip concatenation's gradient reaches two convolution
backwards strided in the channels, and a transformer's NCHW-contiguous proj_out input reaches its convolution and
that convolution's backward; after the rewrite each convolution reads one channels-last clone of such a value and
the graph's result is unchanged; and the tiny SD1 and SDXL models' channels-last passes, compiled, give every
convolution NHWC operands and the eager pass's result."""
import pytest
import torch
import torch.nn.functional as F
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils._python_dispatch import TorchDispatchMode

from harness.ae_run import ae_defaults
from harness.models import make_conditioning, make_model

from aande_pack.nodes.declarations.inputs import settings_from
from aande_pack.nodes.engine import compiled_pass, gradient_pass, nhwc_norm, patch
from aande_pack.nodes.engine.conv_layouts import channels_last_conv_operands
from aande_pack.nodes.engine.observer import RunObserver

CL = torch.channels_last
CONV, CONV_BACKWARD = torch.ops.aten.convolution.default, torch.ops.aten.convolution_backward.default


class ConvOperands(TorchDispatchMode):
    """Records the operands every convolution (input) and convolution backward (incoming gradient, input) runs
    with, in order."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is CONV:
            self.calls.append(("forward", args[0]))
        elif func is CONV_BACKWARD:
            self.calls.append(("backward", args[0], args[1]))
        return func(*args, **(kwargs or {}))

    def layouts(self):
        return [(kind, *(_nhwc(t) for t in operands)) for kind, *operands in self.calls]


def _nhwc(t):
    return t.is_contiguous(memory_format=CL)


def _weights(gen, *shapes):
    return [torch.randn(*shape, generator=gen).contiguous(memory_format=CL) for shape in shapes]


def skip_concatenation_pass(concatenate=True):
    """(pass, its input): two convolutions summed (a ResBlock's skip and body), concatenated with a skip
    connection and convolved (the next up block), or h convolved as it is; the input's gradient."""
    gen = torch.Generator().manual_seed(0)
    w1, w2, w3 = _weights(gen, (6, 4, 3, 3), (6, 4, 3, 3), (5, 10 if concatenate else 6, 3, 3))
    skip = torch.randn(2, 4, 8, 8, generator=gen).contiguous(memory_format=CL)

    def pass_(x):
        x = x.detach().requires_grad_(True)
        h = F.conv2d(x, w1, padding=1) + F.conv2d(x, w2, padding=1)
        y = F.conv2d(torch.cat([h, skip], dim=1) if concatenate else h, w3, padding=1)
        return torch.autograd.grad(y.square().sum(), x)[0]

    return pass_, torch.randn(2, 4, 8, 8, generator=gen).contiguous(memory_format=CL)


def proj_out_pass():
    """(pass, its input): a transformer's end as ComfyUI's SpatialTransformer writes it: tokens (b, h*w, c) back
    to NCHW-contiguous, a 1x1 proj_out convolution, the residual; the input's gradient."""
    gen = torch.Generator().manual_seed(1)
    w_in, w_out = _weights(gen, (6, 6, 1, 1), (6, 6, 1, 1))

    def pass_(x):
        x = x.detach().requires_grad_(True)
        b, c, h, w = x.shape
        tokens = F.conv2d(x, w_in).movedim(1, 3).reshape(b, h * w, c).sin()
        y = x + F.conv2d(tokens.reshape(b, h, w, c).movedim(3, 1).contiguous(), w_out)
        return torch.autograd.grad(y.square().sum(), x)[0]

    return pass_, torch.randn(2, 6, 8, 8, generator=gen).contiguous(memory_format=CL)


def test_a_concatenation_gradient_slice_reaches_both_convolutions_as_one_nhwc_clone():
    pass_, x = skip_concatenation_pass()
    gm = make_fx(pass_, tracing_mode="real")(x)
    with ConvOperands() as before:
        expected = gm(x)
    # the case: the slice, for both convolutions' backward
    assert [c[1] for c in before.layouts() if c[0] == "backward"] == [True, False, False]

    assert channels_last_conv_operands(gm) == 1
    with ConvOperands() as after:
        got = gm(x)
    assert all(all(c[1:]) for c in after.layouts()) and len(after.calls) == len(before.calls) == 6
    backward = [c for c in after.calls if c[0] == "backward"]
    assert backward[1][1] is backward[2][1]  # one clone for the gradient both convolutions read
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got, pass_(x), rtol=1e-5, atol=1e-5)


def test_an_nchw_proj_out_input_reaches_its_convolution_and_the_backward_as_one_nhwc_clone():
    pass_, x = proj_out_pass()
    gm = make_fx(pass_, tracing_mode="real")(x)
    with ConvOperands() as before:
        expected = gm(x)
    # forward: proj_in, proj_out (its input NCHW); backward: proj_out's (the forward's input NCHW), proj_in's
    assert [c[0] for c in before.calls] == ["forward", "forward", "backward", "backward"]
    assert not _nhwc(before.calls[1][1]) and not _nhwc(before.calls[2][2])

    assert channels_last_conv_operands(gm) >= 1  # the CPU's convolutions return some gradients NCHW too (cuDNN's
    with ConvOperands() as after:                # would not): counted here, not on a GPU
        got = gm(x)
    assert after.layouts() == [("forward", True), ("forward", True), ("backward", True, True),
                               ("backward", True, True)]
    assert after.calls[1][1] is after.calls[2][2]  # the forward and its backward read the same clone
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_a_pass_whose_operands_are_all_nhwc_is_left_as_it_is():
    pass_, x = skip_concatenation_pass(concatenate=False)
    gm = make_fx(pass_, tracing_mode="real")(x)
    code = gm.code
    assert channels_last_conv_operands(gm) == 0 and gm.code == code


class Done(Exception):
    pass


class TraceAndCompare(RunObserver):
    """At the first A&E step: the run's pass compiled (as its CUDA graph would) and its traced graph kept."""

    def step_started(self, run, step, z, sigma):
        traced = []
        split = compiled_pass.split_constant_work
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(compiled_pass, "split_constant_work", lambda gm, varying: traced.append(gm) or split(gm, varying))
            expected = run.gradient_pass.eager(z, sigma)
            self.compiled = run.gradient_pass._compiled(z, sigma, expected)
        self.graph, self.channels_last = traced[0], run.gradient_pass.channels_last
        self.z, self.sigma, self.expected = z, sigma, expected
        raise Done


@pytest.mark.parametrize("kind, side", [("sd1", 16), ("sdxl", 32)])
def test_the_tiny_models_compiled_channels_last_pass_gives_its_convolutions_nhwc_operands_and_keeps_its_result(
        monkeypatch, kind, side):
    """graph_blocker None: the pass a CUDA machine would graph (channels-last weights and activations, the NHWC
    GroupNorm traced as plain operations), compiled with aot_eager on the CPU. SD1's proj_out is a convolution;
    SDXL's transformers hand the next block an NCHW residual sum instead."""
    monkeypatch.setattr(gradient_pass, "graph_blocker", lambda *args: None)
    monkeypatch.setattr(gradient_pass, "triton_available", lambda: True)
    monkeypatch.setattr(compiled_pass, "BACKEND", "aot_eager")
    monkeypatch.setattr(nhwc_norm, "_channels_last_cuda", lambda x: x.dim() == 4 and _nhwc(x))
    compiled_pass._COMPILED.clear()
    observer = TraceAndCompare()
    settings = settings_from(ae_defaults(token_indices="2,5", thresholds="", compile_pass=True))
    with pytest.raises(Done), torch.inference_mode():
        patch.ksample(make_model(kind, seed=0, sharpen=6.5), 0, 4, 7.5, "euler", "normal",
                      make_conditioning(kind, 1), make_conditioning(kind, 2),
                      {"samples": torch.zeros(2, 4, side, side)}, 1.0, settings, observer)
    assert observer.channels_last
    with ConvOperands() as seen, torch.no_grad():
        result = observer.graph(observer.z, observer.sigma, *observer.compiled.inputs)
    layouts = seen.layouts()
    assert sum(c[0] == "backward" for c in layouts) > 20 and all(all(c[1:]) for c in layouts)
    clones = [n for n in observer.graph.graph.nodes if n.target is torch.ops.aten.clone.default
              and n.kwargs.get("memory_format") is CL and n.users
              and all(u.target in (CONV, CONV_BACKWARD) for u in n.users)]
    assert clones  # the tiny models have the skip concatenations and NCHW convolution inputs too
    torch.testing.assert_close(result[0], observer.expected.loss, rtol=1e-5, atol=1e-6)
    grad = observer.expected.grad  # float32 rounding differs with the layouts: relative to the whole gradient
    assert float((result[1] - grad).norm() / grad.norm()) < 1e-4
    compiled_pass._COMPILED.clear()
