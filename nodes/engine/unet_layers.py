"""Which of a UNet's cross-attention layers A&E reads for a resolution, and the size of their maps."""
from __future__ import annotations

import math

from .. import compat


def layers_at(diffusion_model, attention_res: str, factor: int, latent_hw: tuple[int, int],
              kernel_size: int | None):
    """Capture keys at latent/`factor`, and the map size there; clear errors when there are none or the maps
    are too small for the smoothing kernel."""
    layers = compat.cross_attention_layers(diffusion_model)
    keys = [key for key, f in layers if f == factor]
    if not keys:
        have = sorted({f for _, f in layers})
        raise ValueError(f"the model has no cross-attention at {attention_res} of the latent; it has some at "
                         + ", ".join(f"latent/{f}" for f in have))
    h, w = (math.ceil(s / factor) for s in latent_hw)
    need = kernel_size // 2 + 1 if kernel_size else 1
    if min(h, w) < max(need, 2):
        m = max(need, 2) * factor
        raise ValueError(f"latent {latent_hw[0]}x{latent_hw[1]} gives {h}x{w} attention maps at {attention_res}, too "
                         f"small for A&E; use a latent of at least {m}x{m} ({m * 8}x{m * 8} pixels) or a finer "
                         "attention_res")
    return keys, (h, w)
