"""The A&E objective: subject maps, their maxima and the loss max_s(1 - m_s)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .attention import softmax_columns, token_probabilities
from .config import AEConfig
from .smoothing import gaussian_kernel, smooth


@dataclass
class Evaluation:
    loss: torch.Tensor            # (B,) per-sample loss, detached
    grad: torch.Tensor | None     # d(sum of losses)/dz, None when no gradient was asked for
    token_maps: torch.Tensor      # (B, n_tokens, h, w) softmaxed maps of the recorded tokens, detached
    subject_maps: torch.Tensor    # (B, S, h, w) subject maps as the loss sees them, detached


class Objective:
    """Turns mean cross-attention (B, h, w, C) into per-sample losses for the selected subject tokens."""

    def __init__(self, config: AEConfig, subject_positions, context_len: int, prompt_positions=()):
        """prompt_positions: the prompt's own tokens (needed for normalize_eot); their maps are recorded too."""
        self.config = config
        self.columns = softmax_columns(context_len, prompt_positions, config.normalize_eot)
        col_of = {p: i for i, p in enumerate(self.columns)}
        missing = [p for p in subject_positions if p not in col_of]
        if missing:
            raise ValueError(f"token positions {missing} are not among the text tokens the loss normalises over "
                             f"({self.columns[0]}..{self.columns[-1]}); choose words of the prompt")
        self.subject_cols = [col_of[p] for p in subject_positions]
        self.record_cols = [col_of[p] for p in prompt_positions] if prompt_positions else self.subject_cols

    def subject_maps(self, attention: torch.Tensor):
        """Returns (token probabilities (B, h, w, n_cols), subject maps (B, S, h, w) as the loss sees them)."""
        probs = token_probabilities(attention, self.columns)
        maps = probs[..., self.subject_cols].permute(0, 3, 1, 2)
        if self.config.smooth_attentions:
            # built per call (3x3): a kernel made once under inference mode could not take part in autograd
            maps = smooth(maps, gaussian_kernel(self.config.kernel_size, self.config.sigma).to(maps.device))
        return probs, maps

    @staticmethod
    def loss_from_maps(maps: torch.Tensor) -> torch.Tensor:
        """(B, S, h, w) -> (B,): max over subjects of max(0, 1 - peak of the subject's map)."""
        peaks = maps.amax(dim=(-2, -1))
        return (1.0 - peaks).clamp(min=0.0).amax(dim=-1)

    def evaluate(self, attention: torch.Tensor, z: torch.Tensor | None = None) -> Evaluation:
        """Loss (and, given z that the attention depends on, its gradient w.r.t. z)."""
        probs, maps = self.subject_maps(attention)
        loss = self.loss_from_maps(maps)
        grad = None
        if z is not None:
            (grad,) = torch.autograd.grad(loss.sum(), [z])
        token_maps = probs[..., self.record_cols].permute(0, 3, 1, 2)
        return Evaluation(loss.detach(), grad, token_maps.detach(), maps.detach())
