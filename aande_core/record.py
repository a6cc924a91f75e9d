"""The attention record (ComfyUI type AE_ATTENTION) that A&E sampling fills and the preview draws."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class StepRecord:
    step: int                      # sampler step index (0-based)
    sigma: float                   # k-diffusion sigma of the latent at this step
    token_maps: torch.Tensor       # (B, n_prompt_tokens, h, w) float32 CPU: softmaxed maps of the prompt's tokens
    subject_maps: torch.Tensor     # (B, S, h, w) float32 CPU: the subject maps as the loss sees them (smoothed)
    loss: torch.Tensor             # (B,) loss at the start of the step, before any update
    refinement_losses: list[list[float]] = field(default_factory=list)  # per sample: losses seen while refining
    final_loss: torch.Tensor | None = None  # (B,) loss whose gradient made the regular update (None: no update)
    updated: bool = False          # whether the latent was changed at this step


@dataclass
class AttentionRecord:
    subject_labels: list[str]      # caption per subject token, e.g. "cat@2"
    subject_positions: list[int]   # context positions of the subjects
    prompt_labels: list[str]       # caption per prompt token (same order as token_maps' dim 1)
    prompt_positions: list[int]    # context positions of the prompt tokens in token_maps
    optimized: bool                # False when A&E ran with the optimisation switched off (recording only)
    steps: list[StepRecord] = field(default_factory=list)
    total_steps: int = 0           # number of sampler steps in the run
    gradient_passes: int = 0       # truncated forward + backward passes A&E ran
    graph_replays: int = 0         # of those, replayed from a CUDA graph

    def clear(self) -> None:
        self.steps.clear()
        self.gradient_passes = self.graph_replays = 0
