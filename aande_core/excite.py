"""One A&E step on a batch of latents: gradient updates with the reference's iterative refinement.

`evaluate(z)` runs the model on z (variance-preserving latent) and returns an Evaluation with the gradient
of the summed per-sample losses. Samples are independent: each has its own loss, refinement and update,
while all share one batched forward per evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from .objective import Evaluation


@dataclass
class StepOutcome:
    z: torch.Tensor                      # latent after the step's updates
    first: Evaluation                    # evaluation at the step's starting latent
    final_loss: torch.Tensor             # (B,) loss whose gradient made the regular update
    refinement_losses: list[list[float]] = field(default_factory=list)  # per sample, one per iteration
    evaluations: int = 0                 # gradient forwards this step
    skipped: list[int] = field(default_factory=list)  # samples whose update was skipped (non-finite gradient)


def _update(z, ev: Evaluation, step_size: float, mask: torch.Tensor, skipped: list[int]) -> torch.Tensor:
    """z - step_size * grad for the samples in mask; a sample with a non-finite gradient keeps its latent."""
    finite = torch.isfinite(ev.grad.flatten(1)).all(dim=1)
    for b in torch.nonzero(mask & ~finite).flatten().tolist():
        if b not in skipped:
            skipped.append(b)
    apply = (mask & finite).to(z.dtype).view(-1, *([1] * (z.dim() - 1)))
    grad = torch.where(apply.bool(), ev.grad, torch.zeros_like(ev.grad))
    return z - step_size * apply * grad


def excite_step(z: torch.Tensor, evaluate: Callable[[torch.Tensor], Evaluation], step_size: float,
                threshold: float | None = None, max_refinement_steps: int = 20) -> StepOutcome:
    """The reference's A&E step, without its redundant forwards.

    Reference behaviour kept on purpose (parity): refinement runs while the loss seen by the *previous*
    iteration is above 1 - threshold, so k iterations apply k updates, then one more evaluation gives the
    loss for the regular update (k + 1 updates in all). The reference's first iteration re-evaluates the
    starting latent and each iteration runs two unused forwards; here the first evaluation is reused and
    the unused forwards are gone: k iterations cost k + 1 gradient forwards instead of k + 2 plus 2k.
    """
    first = evaluate(z)
    evaluations = 1
    skipped: list[int] = []
    refinement_losses: list[list[float]] = [[] for _ in range(z.shape[0])]
    ev = first
    if threshold is not None and max_refinement_steps > 0:
        target = max(0.0, 1.0 - threshold)
        running = first.loss > target
        if running.any():
            iterations = 0
            while True:
                iterations += 1
                for b in torch.nonzero(running).flatten().tolist():
                    refinement_losses[b].append(float(ev.loss[b]))
                z = _update(z, ev, step_size, running & (ev.loss != 0), skipped)
                if iterations >= max_refinement_steps:
                    break
                running = running & (ev.loss > target)
                if not running.any():
                    break
                ev = evaluate(z)
                evaluations += 1
            ev = evaluate(z)
            evaluations += 1
    z = _update(z, ev, step_size, ev.loss != 0, skipped)
    return StepOutcome(z=z, first=first, final_loss=ev.loss, refinement_losses=refinement_losses,
                       evaluations=evaluations, skipped=skipped)
