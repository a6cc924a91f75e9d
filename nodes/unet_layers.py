"""Where a ComfyUI UNet has cross-attention, and which layers A&E reads for a given resolution."""
from __future__ import annotations

import math

from comfy.ldm.modules.attention import SpatialTransformer
from comfy.ldm.modules.diffusionmodules.openaimodel import Downsample, UNetModel, Upsample

ATTENTION_RES = {"auto": 4, "latent/2": 2, "latent/4": 4, "latent/8": 8}


def cross_attention_layers(diffusion_model) -> list[tuple[tuple[str, int, int], int]]:
    """[(replace-patch key (block, id, index), downsampling factor)] in execution order."""
    if not isinstance(diffusion_model, UNetModel):
        raise ValueError(f"Attend-and-Excite needs a UNet with text cross-attention (SD1.x, SD2.x, SDXL); "
                         f"this model is a {type(diffusion_model).__name__}")
    layers, factor = [], 1

    def collect(block, name, block_id):
        for module in block:
            if isinstance(module, SpatialTransformer):
                for index, tb in enumerate(module.transformer_blocks):
                    if getattr(tb, "attn2", None) is not None and not getattr(tb, "switch_temporal_ca_to_sa", False):
                        layers.append(((name, block_id, index), factor))

    for block_id, block in enumerate(diffusion_model.input_blocks):
        collect(block, "input", block_id)
        if any(isinstance(m, Downsample) for m in block):
            factor *= 2
    if diffusion_model.middle_block is not None:
        collect(diffusion_model.middle_block, "middle", 0)
    for block_id, block in enumerate(diffusion_model.output_blocks):
        collect(block, "output", block_id)
        if any(isinstance(m, Upsample) for m in block):
            factor //= 2
    if not layers:
        raise ValueError("this UNet has no text cross-attention layers, which Attend-and-Excite needs")
    return layers


def layers_at(diffusion_model, attention_res: str, latent_hw: tuple[int, int], kernel_size: int | None):
    """Capture keys at the chosen resolution, and the map size there; clear errors when there are none."""
    factor = ATTENTION_RES[attention_res]
    layers = cross_attention_layers(diffusion_model)
    keys = [key for key, f in layers if f == factor]
    if not keys:
        have = sorted({f for _, f in layers})
        raise ValueError(f"the model has no cross-attention at {attention_res} of the latent; it has some at "
                         + ", ".join(f"latent/{f}" if f > 1 else "latent/1" for f in have))
    h, w = (math.ceil(s / factor) for s in latent_hw)
    need = kernel_size // 2 + 1 if kernel_size else 1
    if min(h, w) < max(need, 2):
        m = max(need, 2) * factor
        raise ValueError(f"latent {latent_hw[0]}x{latent_hw[1]} gives {h}x{w} attention maps at {attention_res}, too "
                         f"small for A&E; use a latent of at least {m}x{m} ({m * 8}x{m * 8} pixels) or a finer "
                         "attention_res")
    return keys, (h, w)
