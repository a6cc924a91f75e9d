"""bench/pass_fidelity.py, the single-pass fidelity check of issue 15, on the CPU: its measurement at the first A&E
step of a real run (tiny model, fp16 against a float32 twin) and its verdict. The CUDA graph and the compiled pass it
is for need a GPU (docs/benchmarks.md)."""
from types import SimpleNamespace

import torch

from bench import ae_bench, pass_fidelity


def test_at_the_first_steps_of_two_runs_eager_passes_repeat_and_fp16_differs_from_its_float32_twin():
    result = pass_fidelity.fidelity(ae_bench.archs(True)["sd15"], 2, torch.device("cpu"), torch.float16,
                                    compile_pass=False, latents=2)
    assert not result["replayed"] and not result["compiled"]  # no CUDA graph on the CPU: the run's pass is eager
    assert [c["seed"] for c in result["latents"]] == [0, 1]
    for latent in result["latents"]:
        for same in (latent["eager_vs_eager"], latent["replayed_vs_eager"]):
            assert same["loss"] == 0 and same["grad_rel"] == 0
        to_exact = latent["to_float32"]
        # fp16 rounding shows against the float32 twin, and the twin is the same model: small, nonzero differences
        assert 0 < to_exact["eager"]["grad_rel"] < 0.05 and to_exact["eager"]["grad_cosine"] > 0.99
        assert 0 < to_exact["eager"]["loss"] < 1e-3
        assert to_exact["replayed"] == to_exact["eager"]
        assert latent["pass_ms"] > 0  # the run's pass timed after the check
    # two seeds, two latents: their rounding errors differ
    first, second = (latent["to_float32"]["eager"]["grad_rel"] for latent in result["latents"])
    assert first != second
    assert result["passed"]


def _pass(grad, loss):
    return SimpleNamespace(grad=grad, loss=torch.tensor([loss]))


def _latent(replayed_noise: float, replayed_loss_error: float, seed: int):
    """compare() at one latent: eager passes with unit rounding noise and a 1e-4 loss error, the replayed pass with
    `replayed_noise` times that noise and the given loss error."""
    generator = torch.Generator().manual_seed(seed)
    exact = torch.randn(1, 4, 8, 8, generator=generator)
    noise = [1e-3 * torch.randn(exact.shape, generator=generator) for _ in range(3)]
    eager = [_pass(exact + noise[0], 0.5 + 1e-4), _pass(exact + noise[1], 0.5 - 1e-4)]
    replayed = _pass(exact + replayed_noise * noise[2], 0.5 + replayed_loss_error)
    return pass_fidelity.compare({"eager": eager, "replayed": replayed}, _pass(exact, 0.5))


def test_a_replayed_pass_further_from_float32_than_the_eager_passes_fails_and_one_as_near_passes():
    assert pass_fidelity.verdict([_latent(1, 0, seed=0)])["passed"]  # another draw of the same rounding noise
    assert not pass_fidelity.verdict([_latent(3, 0, seed=0)])["passed"]  # three times the noise in the gradient
    assert not pass_fidelity.verdict([_latent(1, 3e-4, seed=0)])["passed"]  # three times the loss difference


def test_the_verdict_is_on_the_mean_over_latents_not_on_each():
    # loss errors of the replayed pass 1.6x and 0.4x the eager passes' (1e-4) at two latents: the first alone fails,
    # together their mean (1.0x) is within the tolerance
    worse, better = _latent(1, 1.6e-4, seed=0), _latent(1, 0.4e-4, seed=1)
    assert not pass_fidelity.verdict([worse])["passed"]
    both = pass_fidelity.verdict([worse, better])
    assert both["passed"]
    assert abs(both["mean_to_float32"]["replayed"]["loss"] - 1e-4) < 1e-6
    assert abs(both["mean_to_float32"]["eager"]["loss"] - 1e-4) < 1e-6
    # 1.6x at both latents fails on the mean too
    assert not pass_fidelity.verdict([worse, _latent(1, 1.6e-4, seed=1)])["passed"]
