"""excite_step against a literal port of the reference's per-sample loop (diffusers 0.42.1
StableDiffusionAttendAndExcitePipeline: __call__ and _perform_iterative_refinement_step) on a toy model."""
import pytest
import torch

from aande_pack.aande_core.config import StepPlan
from aande_pack.aande_core.excite import excite_step
from aande_pack.aande_core.objective import PassResult


def toy_loss(z):
    """A smooth per-sample loss in (0, 1) that gradient steps can lower."""
    return 1 - torch.sigmoid(z.flatten(1).mean(1) * 3 - 1)


def toy_evaluate(counter):
    def evaluate(z):
        counter.append(1)
        z = z.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = toy_loss(z)
            (grad,) = torch.autograd.grad(loss.sum(), [z])
        empty = torch.zeros(z.shape[0], 1, 1, 1)
        return PassResult(loss.detach(), grad, empty, empty)
    return evaluate


def plan(threshold=None, step_size=2.0, update=True):
    return StepPlan(0, update, threshold, step_size)


def reference_step(latent, step_size, threshold, max_refinement_steps, counter, update=True):
    """The reference's control flow for one sample, forwards counted (including the unused ones). update=False:
    a threshold step at or beyond max_iter_to_alter (refinement, its closing forward, no regular update)."""
    def fwd(lat):
        counter.append(1)
        lat = lat.clone().detach().requires_grad_(True)
        return lat, toy_loss(lat)[0]

    def update_latent(lat, loss):
        grad = torch.autograd.grad(loss, [lat], retain_graph=True)[0]
        return lat - step_size * grad

    with torch.enable_grad():
        latent, loss = fwd(latent)
        losses = [float(loss.detach())]
        if threshold is not None and loss > 1.0 - threshold:
            iteration, target = 0, max(0, 1.0 - threshold)
            while loss > target:
                iteration += 1
                latent, loss = fwd(latent)
                if loss != 0:
                    latent = update_latent(latent, loss)
                counter.extend([1, 1])  # the two unused forwards per iteration
                if iteration >= max_refinement_steps:
                    break
            latent, loss = fwd(latent)
        if update and loss != 0:
            latent = update_latent(latent, loss)
    return latent.detach(), float(loss), losses


@pytest.mark.parametrize("threshold,max_ref", [(None, 20), (0.05, 20), (0.8, 20), (0.3, 3), (0.6, 1)])
def test_matches_reference_loop_per_sample(threshold, max_ref):
    torch.manual_seed(0)
    z = torch.randn(3, 4, 2, 2) * 0.3
    ours_count = []
    out = excite_step(z.clone(), toy_evaluate(ours_count), plan(threshold), max_ref)
    ref_counts = 0
    for b in range(3):
        counter = []
        lat, final_loss, first = reference_step(z[b:b + 1].clone(), 2.0, threshold, max_ref, counter)
        torch.testing.assert_close(out.z[b:b + 1], lat, rtol=1e-6, atol=1e-6)
        assert out.final_loss[b].item() == pytest.approx(final_loss, abs=1e-6)
        assert out.first.loss[b].item() == pytest.approx(first[0], abs=1e-6)
        ref_counts = max(ref_counts, len(counter))
    # fewer forwards than the reference's slowest sample (which has 2 unused forwards per iteration)
    assert len(ours_count) == out.passes
    if out.refinement_losses[0] or out.refinement_losses[1] or out.refinement_losses[2]:
        k = max(len(r) for r in out.refinement_losses)
        assert out.passes == k + 1
        assert ref_counts == 1 + 3 * k + 1
    else:
        assert out.passes == 1
    assert out.updated.tolist() == [True, True, True]


def test_samples_refine_independently():
    z = torch.stack([torch.full((4, 2, 2), 2.0), torch.full((4, 2, 2), -1.0)])  # low and high loss
    out = excite_step(z, toy_evaluate([]), plan(0.8, step_size=1.0), max_refinement_steps=20)
    assert out.refinement_losses[0] == []          # already below 1 - 0.8
    assert len(out.refinement_losses[1]) > 1
    assert out.refinement_losses[1][0] == pytest.approx(float(toy_loss(z[1:2])[0]))


def test_non_finite_gradient_skips_that_sample_only():
    def evaluate(z):
        grad = torch.ones_like(z)
        grad[1] = float("nan")
        return PassResult(torch.tensor([0.5, 0.5]), grad, torch.zeros(2, 1, 1, 1), torch.zeros(2, 1, 1, 1))
    z = torch.zeros(2, 4, 2, 2)
    out = excite_step(z, evaluate, plan(step_size=0.5))
    assert out.skipped.tolist() == [False, True] and out.updated.tolist() == [True, False]
    assert torch.equal(out.z[1], z[1])
    assert torch.allclose(out.z[0], torch.full_like(z[0], -0.5))
    assert torch.isfinite(out.z).all()


def test_zero_loss_means_no_update():
    def evaluate(z):
        return PassResult(torch.zeros(1), torch.ones_like(z), torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1))
    z = torch.randn(1, 4, 2, 2)
    out = excite_step(z, evaluate, plan(0.5, step_size=3.0))
    assert torch.equal(out.z, z) and out.updated.tolist() == [False] and out.skipped.tolist() == [False]


@pytest.mark.parametrize("max_ref", [20, 3])
def test_refinement_step_beyond_max_iter_to_alter_matches_reference(max_ref):
    """A threshold step past max_iter_to_alter: the reference refines (k iterations, k updates) and skips the
    regular update; ours matches its latent and runs k passes (the reference's closing forward is unused)."""
    torch.manual_seed(1)
    z = torch.randn(2, 4, 2, 2) * 0.3
    count = []
    out = excite_step(z.clone(), toy_evaluate(count), plan(0.8, update=False), max_ref)
    for b in range(2):
        lat, _, _ = reference_step(z[b:b + 1].clone(), 2.0, 0.8, max_ref, [], update=False)
        torch.testing.assert_close(out.z[b:b + 1], lat, rtol=1e-6, atol=1e-6)
    k = max(len(r) for r in out.refinement_losses)
    assert k > 0 and out.passes == len(count) == k
    assert out.final_loss is None and out.updated.tolist() == [False, False]
