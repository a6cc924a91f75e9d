"""One A&E step on a batch of latents: the reference's iterative refinement, then the regular update.

`gradient_pass(z)` runs the model on z (variance-preserving latent) and returns a PassResult with the gradient
of the summed per-sample losses. Samples are independent: each has its own loss, refinement and update,
while all share one batched gradient pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .config import StepPlan
from .objective import PassResult


@dataclass
class StepOutcome:
    """The result of one A&E step; tensors stay on z's device (no host synchronisation per step)."""
    z: torch.Tensor                       # latent after the step's updates
    first: PassResult                     # the pass at the step's starting latent
    final_loss: torch.Tensor | None       # (B,) loss whose gradient made the regular update; None: no update step
    refinement_losses: list[list[float]]  # per sample, the loss each refinement iteration updated with
    updated: torch.Tensor                 # (B,) bool: the regular update was applied (finite gradient, loss > 0)
    skipped: torch.Tensor                 # (B,) bool: some update of this step was skipped (non-finite gradient)
    passes: int                           # gradient passes this step ran


def _update(z, result: PassResult, step_size: float, mask: torch.Tensor, skipped: torch.Tensor):
    """(z - step_size * grad for the samples in mask, which of them were updated). A sample with a
    non-finite gradient keeps its latent and is flagged in `skipped` (in place)."""
    finite = torch.isfinite(result.grad.flatten(1)).all(dim=1)
    skipped |= mask & ~finite
    applied = mask & finite
    return torch.where(applied.view(-1, *([1] * (z.dim() - 1))), z - step_size * result.grad, z), applied


def excite_step(z: torch.Tensor, gradient_pass: Callable[[torch.Tensor], PassResult], plan: StepPlan,
                max_refinement_steps: int = 20) -> StepOutcome:
    """The reference's A&E step, without its redundant passes.

    Reference behaviour kept on purpose (parity): refinement runs while the loss seen by the *previous*
    iteration is above 1 - threshold, so k iterations apply k updates; then, on an update step, one more pass
    gives the loss for the regular update (k + 1 updates in all). The reference's first iteration re-evaluates
    the starting latent, each iteration runs two unused forwards, and a refinement step beyond
    max_iter_to_alter ends with a pass whose result nothing uses; here those are gone: k iterations cost
    k + 1 gradient passes on an update step and k on a refinement-only step, instead of k + 2 plus 2k.
    """
    first = gradient_pass(z)
    passes = 1
    skipped = torch.zeros(z.shape[0], dtype=torch.bool, device=z.device)
    refinement_losses: list[list[float]] = [[] for _ in range(z.shape[0])]
    result = first
    if plan.threshold is not None and max_refinement_steps > 0:
        target = max(0.0, 1.0 - plan.threshold)
        losses = first.loss.tolist()  # one host copy per iteration drives the loop
        running = [loss > target for loss in losses]
        iterations = 0
        while any(running):
            iterations += 1
            for b, loss in enumerate(losses):
                if running[b]:
                    refinement_losses[b].append(loss)
            active = torch.tensor(running, device=z.device) & (result.loss != 0)
            z, _ = _update(z, result, plan.step_size, active, skipped)
            if iterations >= max_refinement_steps:
                break
            running = [r and loss > target for r, loss in zip(running, losses)]
            if not any(running):
                break
            result = gradient_pass(z)
            passes += 1
            losses = result.loss.tolist()
        if iterations and plan.update:
            result = gradient_pass(z)
            passes += 1
    if not plan.update:
        return StepOutcome(z, first, None, refinement_losses, torch.zeros_like(skipped), skipped, passes)
    z, updated = _update(z, result, plan.step_size, result.loss != 0, skipped)
    return StepOutcome(z, first, result.loss, refinement_losses, updated, skipped, passes)
