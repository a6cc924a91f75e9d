"""From captured cross-attention probabilities to the per-token maps the A&E loss uses."""
from __future__ import annotations

import torch

from .selection import CHUNK_LEN


class AttentionAccumulator:
    """Running mean of cross-attention probabilities over layers and heads at one resolution.

    Keeping a sum instead of a list of per-layer maps holds one (B, h*w, C) tensor in memory.
    """

    def __init__(self):
        self.total: torch.Tensor | None = None
        self.count = 0
        self.hw: tuple[int, int] | None = None

    def add(self, probs: torch.Tensor, hw: tuple[int, int]) -> None:
        """probs: (B, heads, h*w, C) softmaxed attention of one layer, float32."""
        if self.hw is not None and hw != self.hw:
            raise ValueError(f"attention layers of {hw} and {self.hw} mixed at one resolution")
        self.hw = hw
        summed = probs.sum(dim=1)
        self.total = summed if self.total is None else self.total + summed
        self.count += probs.shape[1]

    def mean(self) -> torch.Tensor:
        """(B, h, w, C) average over every captured layer and head."""
        if self.total is None:
            raise ValueError("no cross-attention was captured at the chosen resolution")
        b, _, c = self.total.shape
        return (self.total / self.count).reshape(b, *self.hw, c)


def softmax_columns(context_len: int, prompt_indices=(), normalize_eot: bool = False) -> list[int]:
    """Context positions that take part in the token softmax.

    Reference (SD1): positions 1..75 of the 77, so the end token and padding are included.
    normalize_eot (reference for SD2): the prompt's own tokens only. For prompts of several 77-token chunks,
    every chunk's start token and the context's last position are left out.
    """
    if normalize_eot:
        if not prompt_indices:
            raise ValueError("normalize_eot needs the prompt's token positions: connect 'Select Subject Tokens' "
                             "(or turn normalize_eot off)")
        return sorted(prompt_indices)
    return [p for p in range(context_len - 1) if p % CHUNK_LEN != 0]


def token_probabilities(attention: torch.Tensor, columns) -> torch.Tensor:
    """(B, h, w, C) mean attention -> (B, h, w, len(columns)): x100 then softmax over the text tokens."""
    return torch.softmax(attention[..., columns] * 100, dim=-1)
