"""Gaussian smoothing of attention maps, built exactly as the reference builds its kernel."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_kernel(kernel_size: int = 3, sigma: float = 0.5) -> torch.Tensor:
    """(k, k) kernel summing to 1. The reference uses exp(-((x - mu) / (2 sigma))^2), not the textbook
    exp(-(x - mu)^2 / (2 sigma^2)); with sigma 0.5 this is a textbook Gaussian of sigma ~0.707."""
    coords = torch.arange(kernel_size, dtype=torch.float32) - (kernel_size - 1) / 2
    g = torch.exp(-((coords / (2 * sigma)) ** 2))
    kernel = g[:, None] * g[None, :]
    return kernel / kernel.sum()


def smooth(maps: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Smooth each (h, w) map of a (..., h, w) tensor with reflect padding, as the reference does."""
    k = kernel.shape[-1]
    pad = k // 2
    h, w = maps.shape[-2:]
    if pad and (h <= pad or w <= pad):
        raise ValueError(f"attention maps of {h}x{w} are too small for a {k}x{k} smoothing kernel; "
                         "use a larger latent, a finer attention resolution or turn smoothing off")
    flat = maps.reshape(-1, 1, h, w)
    if pad:
        flat = F.pad(flat, (pad, pad, pad, pad), mode="reflect")
    out = F.conv2d(flat, kernel.to(flat)[None, None])
    return out.reshape(maps.shape)
