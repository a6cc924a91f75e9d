"""The toy model's UNet: ComfyUI's own SD1.5 model class (comfy.supported_models.SD15, eps prediction, SD's
scaled-linear schedule, 768-wide text cross-attention) with a small unet_config.

Why this size (docs/efficacy_design.md has the measurements): the latent is 4x32x32, and what costs CPU time
is resolution x width, so the full-resolution level is thin (32 channels, no attention) and the capacity sits at
16x16 and 8x8, where text cross-attention decides what goes where. Cross-attention at 16x16 (latent/2) and 8x8
(latent/4) gives A&E both of its coarse resolutions; the objects span about 5 and 2.5 cells there, as SD's
objects do in its 16x16 maps.

ComfyUI's layers skip weight initialisation (they expect a checkpoint), so training starts from `init_weights_`:
PyTorch's default initialisation and, as in the original LDM code, zeros for the last convolution of each
residual block, each transformer's output projection and the output layer, so that the untrained UNet is the
identity on its skip paths and predicts zero noise.
"""
from __future__ import annotations

import torch

from .comfy_host import import_comfy

UNET_CONFIG = {
    "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 32, "channel_mult": [1, 2, 4],
    "num_res_blocks": [1, 1, 2], "transformer_depth": [0, 1, 1, 1], "transformer_depth_output": [0, 0, 1, 1, 1, 1, 1],
    "transformer_depth_middle": 1, "context_dim": 768, "use_linear_in_transformer": False,
    "adm_in_channels": None, "use_checkpoint": False, "use_spatial_transformer": True, "legacy": False,
    "use_temporal_resblock": False, "use_temporal_attention": False,
}


def build_model(unet_config: dict, device, dtype=torch.float32):
    """comfy.model_base.BaseModel (SD15 family, eps) with uninitialised weights, on `device`."""
    import_comfy(cpu=torch.device(device).type == "cpu")
    import comfy.supported_models
    config = comfy.supported_models.SD15(unet_config)
    config.set_inference_dtype(dtype, None)
    return config.get_model({}, device=torch.device(device))


@torch.no_grad()
def init_weights_(unet: torch.nn.Module, seed: int) -> None:
    """Training's starting weights, drawn on the CPU from `seed` (the same on every machine), then copied into
    `unet` wherever it lives."""
    import_comfy()
    from comfy.ldm.modules.attention import SpatialTransformer
    from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock
    devices = {p.device for p in unet.parameters()}
    unet.to("cpu")
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for module in unet.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                _reset(module)
            elif isinstance(module, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
                module.weight.fill_(1.0)
                module.bias.zero_()
        zero = [m.out_layers[-1] for m in unet.modules() if isinstance(m, ResBlock)]
        zero += [m.proj_out for m in unet.modules() if isinstance(m, SpatialTransformer)]
        zero.append(unet.out[-1])
        for module in zero:
            module.weight.zero_()
            if module.bias is not None:
                module.bias.zero_()
    finally:
        torch.random.set_rng_state(generator_state)
    if devices:
        unet.to(devices.pop())


def _reset(module):
    """PyTorch's default initialisation of a Conv2d / Linear (ComfyUI's subclasses turn it off)."""
    base = torch.nn.Conv2d if isinstance(module, torch.nn.Conv2d) else torch.nn.Linear
    base.reset_parameters(module)
