"""Attention heatmaps from an AE_ATTENTION record: pick the maps to show, upsample them and blend
them over the image, so a user can see where each token attends (pure torch/numpy)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .record import AttentionRecord, StepRecord
from .selection import format_ranges

STEP_LAST, STEP_MEAN, STEP_GIVEN = "last A&E step", "mean over A&E steps", "given step"
STEP_MODES = (STEP_LAST, STEP_MEAN, STEP_GIVEN)
TOKENS_SUBJECTS, TOKENS_PROMPT = "subjects", "all prompt tokens"
TOKEN_MODES = (TOKENS_SUBJECTS, TOKENS_PROMPT)
DEFAULT_SHORT_SIDE = 256  # tile size when no image is given

# Turbo-like anchors (value, r, g, b): dark indigo -> blue -> cyan -> green -> yellow -> orange -> red; the hot
# end stays bright so a peak does not read as a dark hole.
# The path through RGB never comes back near itself, so every colour stands for one value.
_ANCHORS = np.array([
    (0.000, 0.19, 0.07, 0.23),
    (0.125, 0.27, 0.40, 0.92),
    (0.250, 0.15, 0.70, 0.97),
    (0.375, 0.10, 0.92, 0.68),
    (0.500, 0.50, 0.99, 0.28),
    (0.625, 0.88, 0.90, 0.20),
    (0.750, 0.99, 0.62, 0.14),
    (0.875, 0.97, 0.33, 0.07),
    (1.000, 0.78, 0.05, 0.03),
], dtype=np.float32)


@dataclass
class MapSelection:
    maps: torch.Tensor   # (B, T, h, w) float32: the maps to draw
    labels: list[str]    # caption per map (T)
    steps: list[int]     # sampler steps the maps come from
    kind: str            # which maps, for the header
    description: str     # e.g. "step 24 (last A&E step)", for the header


def recorded_steps(record: AttentionRecord) -> list[StepRecord]:
    """The record's steps in sampler order; an empty record means the preview ran before sampling."""
    if not record.steps:
        raise ValueError(
            "the attention record has no steps: nothing has been sampled with it yet. Connect this node's "
            "'image' input to the VAE Decode of the A&E sampler's output, so the preview runs after sampling "
            "(with 'A&E Sampler' in SamplerCustom the record is filled only when SamplerCustom runs)")
    return sorted(record.steps, key=lambda s: s.step)


def select_maps(record: AttentionRecord, step_mode: str, step_index: int, tokens: str) -> MapSelection:
    """Pick the subject maps (as the loss sees them) or every prompt token's map at the chosen step(s)."""
    steps = recorded_steps(record)
    if tokens == TOKENS_SUBJECTS:
        get, labels, indices = (lambda s: s.subject_maps), record.subject_labels, record.token_indices
    elif tokens == TOKENS_PROMPT:
        get, labels, indices = (lambda s: s.token_maps), record.prompt_labels, record.prompt_indices
    else:
        raise ValueError(f"unknown tokens choice {tokens!r}; use one of {TOKEN_MODES}")
    if step_mode == STEP_LAST:
        last = "last A&E step" if record.attend_and_excite else "last recorded step"
        chosen, description = [steps[-1]], f"step {steps[-1].step} ({last})"
    elif step_mode == STEP_MEAN:
        chosen = steps
        description = f"mean over steps {format_ranges([s.step for s in steps])}"
    elif step_mode == STEP_GIVEN:
        chosen = [s for s in steps if s.step == step_index]
        if not chosen:
            raise ValueError(f"step {step_index} is not in the attention record; recorded steps: "
                             f"{format_ranges([s.step for s in steps])}. Set step_index to one of them "
                             f"or choose '{STEP_LAST}'")
        description = f"step {step_index}"
    else:
        raise ValueError(f"unknown step choice {step_mode!r}; use one of {STEP_MODES}")
    shapes = {tuple(get(s).shape) for s in chosen}
    if len(shapes) != 1:
        raise ValueError(f"the record's {tokens} maps change shape between steps ({sorted(shapes)}); "
                         "the sampler that filled it is inconsistent, re-run it")
    maps = torch.stack([get(s).detach().float().cpu() for s in chosen]).mean(0)
    if maps.ndim != 4:
        raise ValueError(f"attention maps must be (batch, tokens, h, w), got shape {tuple(maps.shape)}")
    n = maps.shape[1]
    if n == 0:
        raise ValueError(f"the attention record has no {tokens} maps; select subject tokens for the sampler")
    if len(labels) != n:
        labels = [str(p) for p in indices] if len(indices) == n else [f"token {i}" for i in range(n)]
    kind = "subject maps (smoothed)" if tokens == TOKENS_SUBJECTS else "prompt token maps"
    return MapSelection(maps, list(labels), [s.step for s in chosen], kind, description)


def tile_size(map_hw: tuple[int, int], image_hw: tuple[int, int] | None = None,
              short_side: int = DEFAULT_SHORT_SIDE) -> tuple[int, int]:
    """The image's size, after checking it has the maps' aspect (else a wrong or transposed image);
    without an image, short_side pixels on the short side at the maps' aspect."""
    h, w = map_hw
    if image_hw is None:
        scale = short_side / min(h, w)
        return max(1, round(h * scale)), max(1, round(w * scale))
    H, W = image_hw
    if abs(h * W / H - w) > 1:
        raise ValueError(f"the image is {H}x{W} (height x width) but the attention maps are {h}x{w}: their "
                         "aspects differ. Connect the image decoded from this sampler's latent, uncropped")
    return H, W


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(T, h, w) -> (T, H, W), bilinear."""
    return F.interpolate(maps[None].float(), size=size, mode="bilinear", align_corners=False)[0]


def colormap(values: np.ndarray) -> np.ndarray:
    """Values in 0..1 -> RGB in 0..1 (shape + (3,)), turbo-like."""
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
    return np.stack([np.interp(v, _ANCHORS[:, 0], _ANCHORS[:, c]) for c in (1, 2, 3)], -1).astype(np.float32)


def overlay(maps: torch.Tensor, base: np.ndarray, opacity: float) -> tuple[np.ndarray, np.ndarray]:
    """Blend each map (T, h, w), upsampled to base (H, W, 3) and scaled so its hottest pixel gets the
    hottest colour, over base.

    Returns the tiles (T, H, W, 3) in 0..1 and each map's peak value (T,), which captions report since
    the colours are relative.
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be between 0 and 1, got {opacity}")
    peaks = maps.flatten(1).amax(1)
    big = upsample(maps, base.shape[:2]).clamp_min(0)
    norm = big / big.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
    colors = colormap(norm.numpy())
    tiles = (1.0 - opacity) * base[None].astype(np.float32) + opacity * colors
    return tiles, peaks.numpy()
