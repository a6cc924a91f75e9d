"""When the gradient pass may be replayed from a CUDA graph, and what happens when a capture fails (issue 7).

The replay itself needs a GPU: bench/gpu_checks.py compares it with the eager pass on CUDA. Here, on the CPU:
every condition that must keep the pass eager, a clean set-up that allows the graph, and the fallback of a
capture that fails (on a machine without CUDA every capture fails).
"""
import logging

import pytest
import torch

from harness.ae_run import run_node
from harness.tiny_models import tiny_conditioning, tiny_model

from aande_pack.aande_core.objective import Evaluation
from aande_pack.nodes.graphed_pass import ENV_SWITCH, GraphedEvaluation, graph_blocker

CUDA = torch.device("cuda")


class Patcher:
    def __init__(self, dynamic):
        self.dynamic = dynamic

    def is_dynamic(self):
        return self.dynamic


class Model(torch.nn.Module):
    model_lowvram = False


def blocker(device=CUDA, options=None, cond=None, controls=(), modules=(), patcher=None):
    return graph_blocker(device, options or {"transformer_options": {"wrappers": {}, "callbacks": {}}},
                         cond or {}, list(controls), list(modules), patcher)


def test_a_clean_cuda_setup_allows_the_graph(monkeypatch):
    monkeypatch.delenv(ENV_SWITCH, raising=False)
    assert blocker(modules=[Model()], patcher=Patcher(False)) is None


@pytest.mark.parametrize("case, expected", [
    (dict(device=torch.device("cpu")), "not CUDA"),
    (dict(controls=[torch.nn.Linear(1, 1)]), "ControlNet"),
    (dict(options={"transformer_options": {"patches_replace": {"attn2": {("input", 4): print}}}}), "patches_replace"),
    (dict(options={"transformer_options": {"patches": {"input_block_patch": [print]}}}), "patches"),
    (dict(options={"transformer_options": {"wrappers": {"apply_model": {"x": [print]}}}}), "wrappers"),
    (dict(options={"transformer_options": {}, "model_function_wrapper": print}), "model_function_wrapper"),
    (dict(cond={"hooks": object()}), "hooks"),
    (dict(patcher=Patcher(True)), "dynamic VRAM"),
    (dict(modules=[torch.nn.Linear(2, 2)]), "offloaded"),
], ids=["cpu", "controlnet", "attn2-replace", "patches", "wrappers", "function-wrapper", "hooks", "dynamic", "cpu-weights"])
def test_what_keeps_the_pass_eager(case, expected, monkeypatch):
    monkeypatch.delenv(ENV_SWITCH, raising=False)
    assert expected in blocker(**case)


def test_lowvram_and_the_switch_keep_the_pass_eager(monkeypatch):
    lowvram = Model()
    lowvram.model_lowvram = True
    assert "offloaded" in blocker(modules=[lowvram])
    monkeypatch.setenv(ENV_SWITCH, "0")
    assert blocker(modules=[Model()]) == f"{ENV_SWITCH}=0"


def test_a_failed_capture_logs_once_and_the_pass_stays_eager(caplog):
    """Without CUDA the capture fails: each call must still return the eager result, and capture is tried once."""
    calls = []

    def evaluate(z, scale, sigma):
        calls.append(z.clone())
        loss = (z * scale).flatten(1).sum(1) + sigma
        return Evaluation(loss, 2 * z, z[:, :1], z[:, :1])

    graphed = GraphedEvaluation(evaluate)
    z, scale, sigma = torch.randn(2, 4, 3, 3), torch.full((2, 1, 1, 1), 0.5), torch.tensor([1.0, 1.0])
    with caplog.at_level(logging.WARNING, logger="attend_and_excite"):
        results = [graphed(z + i, scale, sigma) for i in range(3)]
    for i, ev in enumerate(results):
        assert torch.equal(ev.grad, 2 * (z + i))
        assert torch.allclose(ev.loss, (z + i).flatten(1).sum(1) * 0.5 + 1.0)
    warnings = [r.getMessage() for r in caplog.records if "CUDA graph" in r.getMessage()]
    assert len(warnings) == 1 and "runs eagerly" in warnings[0]
    assert graphed.failed and graphed.replays == 0


def test_a_cpu_run_counts_its_gradient_passes_and_replays_none():
    """The record's pass count (which the benchmark checks against its hooks) on the eager path."""
    model = tiny_model("sd1", seed=0, sharpen=6.5)
    _, record = run_node(model, tiny_conditioning("sd1", 1), tiny_conditioning("sd1", 2),
                         {"samples": torch.zeros(1, 4, 16, 16)}, steps=10, sampler_name="ddim",
                         scheduler="ddim_uniform", token_indices="2,5", max_refinement_steps=3)
    refinement = [max((len(r) for r in s.refinement_losses), default=0) for s in record.steps]
    assert sum(refinement) > 0
    expected = sum(1 + k for k in refinement)  # a step with k refinement iterations costs k + 1 passes
    assert record.gradient_passes == expected and record.graph_replays == 0
