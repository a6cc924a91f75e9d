"""When the gradient pass may be replayed from a CUDA graph, and what happens when a capture fails (issue 7).

The replay itself needs a GPU: bench/gpu_checks.py compares it with the eager pass on CUDA. Here, on the CPU:
every condition that must keep the pass eager, a clean set-up that allows the graph, and the fallback of a
capture that fails (on a machine without CUDA every capture fails).
"""
import logging

import pytest
import torch

from harness.ae_run import run_node
from harness.models import make_conditioning, make_model

from aande_pack.aande_core.objective import PassResult
from aande_pack.nodes.engine.graphed_pass import ENV_SWITCH, GraphedPass, graph_blocker

CUDA = torch.device("cuda")


class Patcher:
    def __init__(self, dynamic):
        self.dynamic = dynamic

    def is_dynamic(self):
        return self.dynamic


class Model(torch.nn.Module):
    """Stands in for a BaseModel: its patcher and lowvram flag, and parameters on the 'cuda' device."""
    model_lowvram = False

    def __init__(self, patcher=None, on_cpu=False):
        super().__init__()
        self.current_patcher = patcher
        self.on_cpu = on_cpu

    def parameters(self):
        return iter([torch.empty(1)] if self.on_cpu else [])


def blocker(device=CUDA, options=None, cond=None, controls=(), model=None):
    return graph_blocker(device, options or {"transformer_options": {"wrappers": {}, "callbacks": {}}},
                         cond or {}, list(controls), model or Model(Patcher(False)))


def test_a_clean_cuda_setup_allows_the_graph(monkeypatch):
    monkeypatch.delenv(ENV_SWITCH, raising=False)
    assert blocker() is None
    # the pack's own SAMPLER_SAMPLE wrapper (the model patch) runs around sampling, not inside the pass
    ours = {"transformer_options": {"wrappers": {"sampler_sample": {"attend_and_excite": [print]}}}}
    assert blocker(options=ours) is None


@pytest.mark.parametrize("case, expected", [
    (dict(device=torch.device("cpu")), "not CUDA"),
    (dict(controls=[torch.nn.Linear(1, 1)]), "ControlNet"),
    (dict(options={"transformer_options": {"patches_replace": {"attn2": {("input", 4): print}}}}), "patches_replace"),
    (dict(options={"transformer_options": {"patches": {"input_block_patch": [print]}}}), "patches"),
    (dict(options={"transformer_options": {"wrappers": {"apply_model": {"x": [print]}}}}), "apply_model wrappers"),
    (dict(options={"transformer_options": {"wrappers": {"calc_cond_batch": {"x": [print]}}}}),
     "calc_cond_batch wrappers"),
    (dict(options={"transformer_options": {}, "model_function_wrapper": print}), "model_function_wrapper"),
    (dict(cond={"hooks": object()}), "hooks"),
    (dict(model=Model(Patcher(True))), "dynamic VRAM"),
    (dict(model=Model(on_cpu=True)), "lowvram"),
], ids=["cpu", "controlnet", "attn2-replace", "patches", "apply-model-wrapper", "cond-batch-wrapper",
        "function-wrapper", "hooks", "dynamic", "cpu-weights"])
def test_what_keeps_the_pass_eager(case, expected, monkeypatch):
    monkeypatch.delenv(ENV_SWITCH, raising=False)
    assert expected in blocker(**case)


def test_lowvram_and_the_switch_keep_the_pass_eager(monkeypatch):
    lowvram = Model()
    lowvram.model_lowvram = True
    assert "lowvram" in blocker(model=lowvram)
    monkeypatch.setenv(ENV_SWITCH, "0")
    assert blocker() == f"{ENV_SWITCH}=0"


def test_a_failed_capture_logs_once_and_the_pass_stays_eager(caplog):
    """Without CUDA the capture fails: each call must still return the eager result, and capture is tried once."""
    calls = []

    def eager(z, sigma):
        calls.append(z.clone())
        loss = (z * 0.5).flatten(1).sum(1) + sigma
        return PassResult(loss, 2 * z, z[:, :1], z[:, :1])

    graphed = GraphedPass(eager)
    z, sigma = torch.randn(2, 4, 3, 3), torch.tensor([1.0, 1.0])
    with caplog.at_level(logging.WARNING, logger="attend_and_excite"):
        results = [graphed(z + i, sigma) for i in range(3)]
    for i, ev in enumerate(results):
        assert torch.equal(ev.grad, 2 * (z + i))
        assert torch.allclose(ev.loss, (z + i).flatten(1).sum(1) * 0.5 + 1.0)
    warnings = [r.getMessage() for r in caplog.records if "CUDA graph" in r.getMessage()]
    assert len(warnings) == 1 and "runs eagerly" in warnings[0]
    assert graphed.failed and graphed.replays == 0


def test_a_cpu_run_counts_its_gradient_passes_and_replays_none():
    """The record's pass count (which the benchmark checks against its hooks) on the eager path."""
    model = make_model("sd1", seed=0, sharpen=6.5)
    _, record = run_node(model, make_conditioning("sd1", 1), make_conditioning("sd1", 2),
                         {"samples": torch.zeros(1, 4, 16, 16)}, steps=10, sampler_name="ddim",
                         scheduler="ddim_uniform", token_indices="2,5", max_refinement_steps=3)
    refinement = [max(s.refinement_iterations) for s in record.steps]
    assert sum(refinement) > 0
    expected = sum(1 + k for k in refinement)  # a step with k refinement iterations costs k + 1 passes
    assert record.gradient_passes == expected and record.graph_replays == 0


def test_channels_last_stand_ins_give_the_same_convolution_and_gradient():
    """The CUDA-graph pass swaps conv kernels for channels-last copies (inference_weights.py); on any device they
    must compute what the NCHW aliases compute, let autograd through, and be put back afterwards."""
    from aande_pack.nodes.engine.inference_weights import WeightAliases
    with torch.inference_mode():
        conv = torch.nn.Conv2d(4, 8, 3, padding=1)
        conv.weight.copy_(torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(0)))
    original = conv.weight
    x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(1))
    results = []
    for channels_last in (False, True):
        aliases = WeightAliases(conv, channels_last=channels_last)
        with aliases.swapped(), torch.inference_mode(False), torch.enable_grad():
            assert conv.weight.is_contiguous(memory_format=torch.channels_last) == channels_last
            xi = (x.contiguous(memory_format=torch.channels_last) if channels_last else x).requires_grad_(True)
            out = conv(xi)
            (grad,) = torch.autograd.grad(out.square().sum(), [xi])
        results.append((out.detach(), grad))
        assert conv.weight is original and original.is_inference()
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-5, atol=1e-4)  # another summation order
