"""The attention record (ComfyUI type AE_ATTENTION) of one sampling run, and the builder that makes it.

Protocol: a run makes a RecordBuilder (begin), adds one step per A&E step with the step's tensors still on
the device (`add_step`), and calls `finish()` once, which copies everything to the CPU in one go and returns
the AttentionRecord. Copying per step would stall the GPU at every A&E step. A finished record is frozen.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .excite import StepOutcome
from .objective import PassResult


@dataclass(frozen=True)
class StepRecord:
    """One A&E step of a finished run: CPU float32 tensors, plain Python values."""
    step: int                                     # sampler step index (0-based)
    sigma: float                                  # k-diffusion sigma of the latent at this step
    token_maps: torch.Tensor                      # (B, n_prompt_tokens, h, w): softmaxed maps of the prompt's tokens
    subject_maps: torch.Tensor                    # (B, S, h, w): the subject maps as the loss sees them (smoothed)
    loss: torch.Tensor                            # (B,) loss at the start of the step, before any update
    refinement_losses: tuple[tuple[float, ...], ...] = ()  # per sample: the loss of each refinement iteration
    final_loss: torch.Tensor | None = None        # (B,) loss whose gradient made the regular update; None: none
    updated: tuple[bool, ...] = ()                # per sample: the regular update was applied (finite, loss > 0)
    skipped: tuple[bool, ...] = ()                # per sample: an update was skipped (non-finite gradient)

    @property
    def refinement_iterations(self) -> tuple[int, ...]:
        """Per sample: how many refinement iterations ran (each applied one update unless skipped)."""
        return tuple(len(r) for r in self.refinement_losses)


@dataclass(frozen=True)
class AttentionRecord:
    """What one sampling run recorded, for 'Attention Map Preview' and for analysis."""
    subject_labels: tuple[str, ...]      # caption per subject token, e.g. "cat@2"
    token_indices: tuple[int, ...]       # context indices of the subjects
    prompt_labels: tuple[str, ...]       # caption per prompt token (same order as token_maps' dim 1)
    prompt_indices: tuple[int, ...]      # context indices of the prompt tokens in token_maps
    attend_and_excite: bool              # False: standard sampling, attention recorded only
    total_steps: int                     # sampler steps in the run
    steps: tuple[StepRecord, ...] = ()   # the A&E steps, in sampler order
    gradient_passes: int = 0             # truncated forward + backward passes A&E ran
    graph_replays: int = 0               # of those, replayed from a CUDA graph
    compiled_pass: bool = False          # the replays ran the compiled pass (the input compile_pass)


@dataclass
class _PendingStep:
    """A step as the run hands it over: tensors on the sampling device, read back only by `finish()`."""
    step: int
    sigma: torch.Tensor                  # 0-d, device
    first: PassResult                    # device tensors
    final_loss: torch.Tensor | None      # (B,) device
    refinement_losses: list[list[float]]
    updated: torch.Tensor                # (B,) bool, device
    skipped: torch.Tensor                # (B,) bool, device


class RecordBuilder:
    """begin (constructor) -> add_step / add_standard_step per A&E step -> finish() -> AttentionRecord."""

    def __init__(self, subject_labels, token_indices, prompt_labels, prompt_indices, attend_and_excite: bool,
                 total_steps: int):
        self._header = dict(subject_labels=tuple(subject_labels), token_indices=tuple(token_indices),
                            prompt_labels=tuple(prompt_labels), prompt_indices=tuple(prompt_indices),
                            attend_and_excite=attend_and_excite, total_steps=total_steps)
        self._steps: list[_PendingStep] = []
        self._finished = False

    def add_step(self, step: int, sigma: torch.Tensor, outcome: StepOutcome) -> None:
        """An A&E step: its first pass's maps and loss, the refinement losses, what was updated."""
        self._add(_PendingStep(step, sigma.flatten()[0], outcome.first, outcome.final_loss,
                               outcome.refinement_losses, outcome.updated, outcome.skipped))

    def add_standard_step(self, step: int, sigma: torch.Tensor, result: PassResult) -> None:
        """A recorded step of standard sampling (A&E off): maps and loss, nothing updated."""
        none = torch.zeros(result.loss.shape[0], dtype=torch.bool, device=result.loss.device)
        self._add(_PendingStep(step, sigma.flatten()[0], result, None, [[] for _ in range(len(none))], none, none))

    def _add(self, pending: _PendingStep) -> None:
        if self._finished:
            raise RuntimeError("the attention record is finished; a run adds its steps before finish()")
        self._steps.append(pending)

    def skipped_updates(self) -> list[tuple[int, list[int]]]:
        """(step, samples) for every step where an update was skipped: one host copy for the whole run."""
        if not self._steps:
            return []
        flags = torch.stack([p.skipped for p in self._steps]).cpu()
        return [(p.step, torch.nonzero(row).flatten().tolist()) for p, row in zip(self._steps, flags) if row.any()]

    def finish(self, gradient_passes: int = 0, graph_replays: int = 0, compiled_pass: bool = False) -> AttentionRecord:
        """Copy the steps to the CPU (float32) and freeze them; called once, also after an interrupt."""
        if self._finished:
            raise RuntimeError("the attention record is already finished")
        self._finished = True
        steps = tuple(sorted((_finished_step(p) for p in self._steps), key=lambda s: s.step))
        return AttentionRecord(**self._header, steps=steps, gradient_passes=gradient_passes,
                               graph_replays=graph_replays, compiled_pass=compiled_pass)


def _finished_step(p: _PendingStep) -> StepRecord:
    def cpu(t):
        return t.detach().float().cpu()
    return StepRecord(
        step=p.step, sigma=float(p.sigma), token_maps=cpu(p.first.token_maps), subject_maps=cpu(p.first.subject_maps),
        loss=cpu(p.first.loss), refinement_losses=tuple(tuple(r) for r in p.refinement_losses),
        final_loss=None if p.final_loss is None else cpu(p.final_loss),
        updated=tuple(bool(v) for v in p.updated.cpu()), skipped=tuple(bool(v) for v in p.skipped.cpu()))
