"""bench/pass_fidelity.py, the single-pass fidelity check of issue 15, on the CPU: its measurement at the first A&E
step of a real run (tiny model, fp16 against a float32 twin) and its verdict. The CUDA graph and the compiled pass it
is for need a GPU (docs/benchmarks.md)."""
from types import SimpleNamespace

import torch

from bench import ae_bench, pass_fidelity


def test_at_the_first_step_eager_passes_repeat_and_fp16_differs_from_its_float32_twin():
    result = pass_fidelity.fidelity(ae_bench.archs(True)["sd15"], 2, torch.device("cpu"), torch.float16,
                                    compile_pass=False)
    assert not result["replayed"] and not result["compiled"]  # no CUDA graph on the CPU: the run's pass is eager
    for same in (result["eager_vs_eager"], result["replayed_vs_eager"]):
        assert same["loss"] == 0 and same["grad_rel"] == 0
    to_exact = result["to_float32"]
    # fp16 rounding shows against the float32 twin, and the twin is the same model: small, nonzero differences
    assert 0 < to_exact["eager"]["grad_rel"] < 0.05 and to_exact["eager"]["grad_cosine"] > 0.99
    assert 0 < to_exact["eager"]["loss"] < 1e-3
    assert to_exact["replayed"] == to_exact["eager"] and result["passed"]
    assert result["pass_ms"] > 0  # the run's pass timed after the check


def _pass(grad, loss):
    return SimpleNamespace(grad=grad, loss=torch.tensor([loss]))


def test_a_replayed_pass_further_from_float32_than_the_eager_passes_fails_and_one_as_near_passes():
    torch.manual_seed(0)
    exact = torch.randn(1, 4, 8, 8)
    noise = [1e-3 * torch.randn_like(exact) for _ in range(3)]
    eager = [_pass(exact + noise[0], 0.5 + 1e-4), _pass(exact + noise[1], 0.5 - 1e-4)]

    def verdict(replayed):
        return pass_fidelity.compare({"eager": eager, "replayed": replayed}, _pass(exact, 0.5))

    assert verdict(_pass(exact + noise[2], 0.5))["passed"]  # another draw of the same rounding noise
    assert not verdict(_pass(exact + 3 * noise[2], 0.5))["passed"]  # three times the noise in the gradient
    assert not verdict(_pass(exact + noise[2], 0.5 + 3e-4))["passed"]  # three times the loss difference
