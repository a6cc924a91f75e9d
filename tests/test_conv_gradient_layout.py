"""The traced channels-last pass asks for NHWC gradients at its convolutions' backward
(nodes/engine/conv_gradient_layout.py): on a small graph with a skip concatenation, as in the UNet's up blocks,
the slice of the concatenation's gradient reaches two convolution backwards strided in the channels; after the
rewrite both read one channels-last clone of it and the graph's result is unchanged; and the tiny SD1 model's
channels-last pass, compiled, feeds every convolution backward an NHWC gradient and gives the eager pass's result."""
import pytest
import torch
import torch.nn.functional as F
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils._python_dispatch import TorchDispatchMode

from harness.ae_run import ae_defaults
from harness.models import make_conditioning, make_model

from aande_pack.nodes.declarations.inputs import settings_from
from aande_pack.nodes.engine import compiled_pass, gradient_pass, nhwc_norm, patch
from aande_pack.nodes.engine.conv_gradient_layout import channels_last_conv_gradients
from aande_pack.nodes.engine.observer import RunObserver

CL = torch.channels_last


class BackwardGradients(TorchDispatchMode):
    """Records the incoming gradient of every convolution backward that runs."""

    def __init__(self):
        super().__init__()
        self.grads = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.convolution_backward.default:
            self.grads.append(args[0])
        return func(*args, **(kwargs or {}))


def _nhwc(t):
    return t.is_contiguous(memory_format=CL)


def skip_concatenation_pass(concatenate=True):
    """(pass, its input): two convolutions summed (a ResBlock's skip and body), concatenated with a skip
    connection and convolved (the next up block), or h convolved as it is; the input's gradient."""
    gen = torch.Generator().manual_seed(0)
    w1, w2 = (torch.randn(6, 4, 3, 3, generator=gen).contiguous(memory_format=CL) for _ in range(2))
    w3 = torch.randn(5, 10 if concatenate else 6, 3, 3, generator=gen).contiguous(memory_format=CL)
    skip = torch.randn(2, 4, 8, 8, generator=gen).contiguous(memory_format=CL)

    def pass_(x):
        x = x.detach().requires_grad_(True)
        h = F.conv2d(x, w1, padding=1) + F.conv2d(x, w2, padding=1)
        y = F.conv2d(torch.cat([h, skip], dim=1) if concatenate else h, w3, padding=1)
        return torch.autograd.grad(y.square().sum(), x)[0]

    return pass_, torch.randn(2, 4, 8, 8, generator=gen).contiguous(memory_format=CL)


def test_a_concatenation_gradient_slice_reaches_both_convolutions_as_one_nhwc_clone():
    pass_, x = skip_concatenation_pass()
    gm = make_fx(pass_, tracing_mode="real")(x)
    with BackwardGradients() as before:
        expected = gm(x)
    assert [_nhwc(g) for g in before.grads] == [True, False, False]  # the case: the slice, for both convolutions

    assert channels_last_conv_gradients(gm) == 1
    with BackwardGradients() as after:
        got = gm(x)
    assert len(after.grads) == 3 and all(_nhwc(g) for g in after.grads)
    assert after.grads[1] is after.grads[2]  # one clone for the gradient both convolutions read
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got, pass_(x), rtol=1e-5, atol=1e-5)


def test_a_pass_whose_gradients_are_all_nhwc_is_left_as_it_is():
    pass_, x = skip_concatenation_pass(concatenate=False)
    gm = make_fx(pass_, tracing_mode="real")(x)
    code = gm.code
    assert channels_last_conv_gradients(gm) == 0 and gm.code == code


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


def test_the_tiny_models_compiled_channels_last_pass_feeds_nhwc_gradients_and_keeps_its_result(monkeypatch):
    """graph_blocker None: the pass a CUDA machine would graph (channels-last weights and activations, the NHWC
    GroupNorm traced as plain operations), compiled with aot_eager on the CPU."""
    monkeypatch.setattr(gradient_pass, "graph_blocker", lambda *args: None)
    monkeypatch.setattr(gradient_pass, "triton_available", lambda: True)
    monkeypatch.setattr(compiled_pass, "BACKEND", "aot_eager")
    monkeypatch.setattr(nhwc_norm, "_channels_last_cuda", lambda x: x.dim() == 4 and _nhwc(x))
    compiled_pass._COMPILED.clear()
    observer = TraceAndCompare()
    settings = settings_from(ae_defaults(token_indices="2,5", thresholds="", compile_pass=True))
    with pytest.raises(Done), torch.inference_mode():
        patch.ksample(make_model("sd1", seed=0, sharpen=6.5), 0, 4, 7.5, "euler", "normal",
                      make_conditioning("sd1", 1), make_conditioning("sd1", 2),
                      {"samples": torch.zeros(2, 4, 16, 16)}, 1.0, settings, observer)
    assert observer.channels_last
    with BackwardGradients() as seen, torch.no_grad():
        result = observer.graph(observer.z, observer.sigma, *observer.compiled.inputs)
    assert len(seen.grads) > 20 and all(_nhwc(g) for g in seen.grads)
    clones = [n for n in observer.graph.graph.nodes if n.target is torch.ops.aten.clone.default
              and n.kwargs.get("memory_format") is CL and n.users
              and all(u.target is torch.ops.aten.convolution_backward.default for u in n.users)]
    assert clones  # the tiny model has the skip concatenations too
    torch.testing.assert_close(result[0], observer.expected.loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(result[1], observer.expected.grad, rtol=1e-4, atol=1e-6)
    compiled_pass._COMPILED.clear()
