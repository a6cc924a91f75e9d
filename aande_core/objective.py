"""The A&E objective: subject maps, their maxima and the loss max_s(1 - m_s), with its gradient."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .attention import softmax_columns, token_probabilities
from .smoothing import gaussian_kernel, smooth


@dataclass
class PassResult:
    """What one gradient pass gives: per-sample losses, their gradient and the maps they were read from."""
    loss: torch.Tensor            # (B,) per-sample loss, detached
    grad: torch.Tensor | None     # d(sum of losses)/dz, None when no gradient was asked for
    token_maps: torch.Tensor      # (B, n_tokens, h, w) softmaxed maps of the recorded tokens, detached
    subject_maps: torch.Tensor    # (B, S, h, w) subject maps as the loss sees them, detached


class Objective:
    """Turns mean cross-attention (B, h, w, C) into per-sample losses for the selected subject tokens."""

    def __init__(self, subject_indices, context_len: int, prompt_indices=(), normalize_eot: bool = False,
                 smoothing: tuple[int, float] | None = (3, 0.5)):
        """prompt_indices: the prompt's own tokens (needed for normalize_eot); their maps are recorded too.
        smoothing: (kernel size, sigma) of the Gaussian applied to each subject map, or None."""
        self.columns = softmax_columns(context_len, prompt_indices, normalize_eot)
        col_of = {p: i for i, p in enumerate(self.columns)}
        self.subject_cols = [col_of[p] for p in subject_indices]
        self.record_cols = [col_of[p] for p in prompt_indices] if prompt_indices else self.subject_cols
        self.smoothing = smoothing
        self._device_cache: dict = {}

    def _on(self, device):
        """Index tensors and the smoothing kernel on `device`, made once: a gradient pass should not copy
        from the host. Rebuilt if the inference-mode state differs (inference tensors cannot enter autograd)."""
        key = (device, torch.is_inference_mode_enabled())
        if key not in self._device_cache:
            def index(cols):
                return torch.tensor(cols, dtype=torch.long, device=device)
            kernel = gaussian_kernel(*self.smoothing).to(device) if self.smoothing else None
            self._device_cache[key] = (index(self.columns), index(self.subject_cols), index(self.record_cols), kernel)
        return self._device_cache[key]

    def subject_maps(self, attention: torch.Tensor):
        """Returns (token probabilities (B, h, w, n_cols), subject maps (B, S, h, w) as the loss sees them)."""
        columns, subject_cols, _, kernel = self._on(attention.device)
        probs = token_probabilities(attention, columns)
        maps = probs[..., subject_cols].permute(0, 3, 1, 2)
        if kernel is not None:
            maps = smooth(maps, kernel)
        return probs, maps

    @staticmethod
    def loss_from_maps(maps: torch.Tensor) -> torch.Tensor:
        """(B, S, h, w) -> (B,): max over subjects of max(0, 1 - peak of the subject's map)."""
        peaks = maps.amax(dim=(-2, -1))
        return (1.0 - peaks).clamp(min=0.0).amax(dim=-1)

    def loss(self, attention: torch.Tensor, z: torch.Tensor | None = None) -> PassResult:
        """Loss (and, given z that the attention depends on, its gradient w.r.t. z)."""
        probs, maps = self.subject_maps(attention)
        loss = self.loss_from_maps(maps)
        grad = None
        if z is not None:
            (grad,) = torch.autograd.grad(loss.sum(), [z])
        token_maps = probs[..., self._on(probs.device)[2]].permute(0, 3, 1, 2)
        return PassResult(loss.detach(), grad, token_maps.detach(), maps.detach())
