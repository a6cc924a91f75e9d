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
    skipped: torch.Tensor | None = None  # (B,) bool on z's device: an update was skipped (non-finite gradient)


def _update(z, ev: Evaluation, step_size: float, mask: torch.Tensor, skipped: torch.Tensor) -> torch.Tensor:
    """z - step_size * grad for the samples in mask; a sample with a non-finite gradient keeps its latent
    and is flagged in `skipped` (on the device: no synchronisation per update)."""
    finite = torch.isfinite(ev.grad.flatten(1)).all(dim=1)
    skipped |= mask & ~finite
    apply = (mask & finite).view(-1, *([1] * (z.dim() - 1)))
    return torch.where(apply, z - step_size * ev.grad, z)


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
    skipped = torch.zeros(z.shape[0], dtype=torch.bool, device=z.device)
    refinement_losses: list[list[float]] = [[] for _ in range(z.shape[0])]
    ev = first
    if threshold is not None and max_refinement_steps > 0:
        target = max(0.0, 1.0 - threshold)
        losses = first.loss.tolist()  # one host copy per iteration drives the loop
        running = [loss > target for loss in losses]
        if any(running):
            iterations = 0
            while True:
                iterations += 1
                for b, loss in enumerate(losses):
                    if running[b]:
                        refinement_losses[b].append(loss)
                active = torch.tensor(running, device=z.device) & (ev.loss != 0)
                z = _update(z, ev, step_size, active, skipped)
                if iterations >= max_refinement_steps:
                    break
                running = [r and loss > target for r, loss in zip(running, losses)]
                if not any(running):
                    break
                ev = evaluate(z)
                evaluations += 1
                losses = ev.loss.tolist()
            ev = evaluate(z)
            evaluations += 1
    z = _update(z, ev, step_size, ev.loss != 0, skipped)
    return StepOutcome(z=z, first=first, final_loss=ev.loss, refinement_losses=refinement_losses,
                       evaluations=evaluations, skipped=skipped)
