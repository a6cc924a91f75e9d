"""Random-weight SD1.5- and SDXL-architecture models as ComfyUI MODELs, and SD1.5's diffusers twin.

Weights are drawn on the device, in the model's dtype, straight into the tensors ComfyUI allocated (its layers
skip initialisation), under inference mode as ComfyUI loads checkpoints: matrices and kernels ~ N(0, 1/fan_in),
norm scales 1, biases 0. The diffusers twin is drawn the same way first and copied into the ComfyUI model
through comfy.utils.unet_to_diffusers, so the peer runs identical weights.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import torch

from .host import ROOT

# ComfyUI's own unet_configs for SD1.5 and SDXL (comfy/model_detection.py), without the dtype
SD15_UNET = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True, "legacy": False,
    "adm_in_channels": None, "in_channels": 4, "model_channels": 320, "num_res_blocks": [2, 2, 2, 2],
    "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "channel_mult": [1, 2, 4, 4], "transformer_depth_middle": 1,
    "use_linear_in_transformer": False, "context_dim": 768, "num_heads": 8,
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    "use_temporal_attention": False, "use_temporal_resblock": False}
SDXL_UNET = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True, "legacy": False,
    "num_classes": "sequential", "adm_in_channels": 2816, "in_channels": 4, "model_channels": 320,
    "num_res_blocks": [2, 2, 2], "transformer_depth": [0, 0, 2, 2, 10, 10], "channel_mult": [1, 2, 4],
    "transformer_depth_middle": 10, "use_linear_in_transformer": True, "context_dim": 2048, "num_head_channels": 64,
    "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10],
    "use_temporal_attention": False, "use_temporal_resblock": False}

# diffusers' DDIMScheduler as Stable Diffusion ships it
SD_DDIM = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
               clip_sample=False, set_alpha_to_one=False, steps_offset=1)


@dataclass(frozen=True)
class Arch:
    name: str            # "sd15" or "sdxl" (tiny stand-ins in --quick)
    config: str          # class in comfy.supported_models
    unet: dict
    latent: int          # latent side; the image is 8x larger
    context_dim: int
    pooled_dim: int = 0  # SDXL's pooled text embedding (part of its ADM input)


def archs(quick: bool) -> dict[str, Arch]:
    """Full SD1.5 (512x512) and SDXL (1024x1024), or the test harness's tiny sd1/sdxl at 128x128."""
    if not quick:
        return {"sd15": Arch("sd15", "SD15", SD15_UNET, 64, 768),
                "sdxl": Arch("sdxl", "SDXL", SDXL_UNET, 128, 2048, 1280)}
    sys.path.insert(0, str(ROOT / "tests"))
    from harness.tiny_models import KINDS
    return {"sd15": Arch("sd15", KINDS["sd1"].config, KINDS["sd1"].unet, 16, KINDS["sd1"].context_dim),
            "sdxl": Arch("sdxl", KINDS["sdxl"].config, KINDS["sdxl"].unet, 16, KINDS["sdxl"].context_dim,
                         KINDS["sdxl"].pooled_dim)}


@torch.inference_mode()
def fill_random_(state: dict[str, torch.Tensor], seed: int):
    """Fill every tensor of a state dict in place; the generator lives on the tensors' device."""
    device = next(iter(state.values())).device
    gen = torch.Generator(device).manual_seed(seed)
    for name in sorted(state):
        t = state[name]
        if t.dim() >= 2:
            t.normal_(0.0, 1.0 / math.sqrt(math.prod(t.shape[1:])), generator=gen)
        elif name.endswith("weight"):
            t.fill_(1.0)
        else:
            t.zero_()


def comfy_config(arch: Arch, dtype):
    import comfy.model_base
    import comfy.supported_models
    config = getattr(comfy.supported_models, arch.config)(arch.unet)
    # detection would read the prediction type from a checkpoint; random weights have none
    config.model_type = lambda state_dict, prefix="": comfy.model_base.ModelType.EPS
    config.set_inference_dtype(dtype, None)
    return config


def comfy_model(arch: Arch, device, dtype, seed=0, diffusers_unet=None):
    """A ModelPatcher with random weights, or with the weights of `diffusers_unet` (same architecture)."""
    import comfy.model_management
    import comfy.model_patcher
    config = comfy_config(arch, dtype)
    with torch.inference_mode():
        model = config.get_model({}, device=device)
        state = model.diffusion_model.state_dict()
        if diffusers_unet is None:
            fill_random_(state, seed)
        else:
            for name, tensor in comfy_weights(diffusers_unet, config.unet_config, state).items():
                state[name].copy_(tensor)
    return comfy.model_patcher.ModelPatcher(model, load_device=device,
                                            offload_device=comfy.model_management.unet_offload_device())


def comfy_weights(unet, unet_config: dict, expected) -> dict:
    """The diffusers UNet's tensors under ComfyUI's names; they must cover exactly the `expected` names."""
    import comfy.utils
    key_map = comfy.utils.unet_to_diffusers(unet_config)
    state = unet.state_dict()
    missing = sorted(set(state) - set(key_map))
    if missing:
        raise ValueError(f"unet_to_diffusers has no ComfyUI name for {missing[:5]}: the layouts differ")
    out = {key_map[name]: tensor for name, tensor in state.items()}
    if set(out) != set(expected):
        missing, extra = sorted(set(expected) - set(out))[:5], sorted(set(out) - set(expected))[:5]
        raise ValueError(f"diffusers weights do not cover the ComfyUI UNet: missing {missing}, extra {extra}")
    return out


def diffusers_config(unet_config: dict, latent: int) -> dict:
    """UNet2DConditionModel arguments for an SD1-style ComfyUI unet_config (conv proj_in, heads by count)."""
    per_level = unet_config["num_res_blocks"]
    if len(set(per_level)) != 1 or "num_heads" not in unet_config or unet_config.get("adm_in_channels"):
        raise ValueError("the diffusers peer is built for SD1-style UNets only")
    depth = unet_config["transformer_depth"]
    attention = [depth[level * per_level[0]] > 0 for level in range(len(per_level))]
    return dict(
        sample_size=latent, in_channels=4, out_channels=4, layers_per_block=per_level[0],
        block_out_channels=tuple(unet_config["model_channels"] * m for m in unet_config["channel_mult"]),
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
        cross_attention_dim=unet_config["context_dim"], attention_head_dim=unet_config["num_heads"],
        use_linear_projection=unet_config["use_linear_in_transformer"], norm_num_groups=32)


def diffusers_unet(arch: Arch, device, dtype, seed=0):
    """diffusers' UNet2DConditionModel with SD1.5's layout (the arch's), allocated on the device without the
    default initialisation, then drawn like the ComfyUI models."""
    from diffusers import UNet2DConditionModel
    config = comfy_config(arch, dtype)
    with torch.device("meta"):
        unet = UNet2DConditionModel(**diffusers_config(config.unet_config, arch.latent))
    unet = unet.to(dtype).to_empty(device=device)
    if list(unet.named_buffers()):
        raise ValueError("the diffusers UNet has buffers that a meta-device build leaves empty")
    fill_random_(unet.state_dict(), seed)
    return unet.eval().requires_grad_(False)


def diffusers_pipelines(unet):
    """(plain StableDiffusionPipeline, StableDiffusionAttendAndExcitePipeline) around `unet`. Prompts come in as
    embeddings and latents come out, so neither needs a text encoder, tokenizer, VAE or safety checker."""
    from diffusers import DDIMScheduler
    from diffusers.pipelines.deprecated.stable_diffusion_attend_and_excite import (
        StableDiffusionAttendAndExcitePipeline)
    from diffusers.pipelines.stable_diffusion import StableDiffusionPipeline
    none = dict(vae=None, text_encoder=None, tokenizer=None, safety_checker=None, feature_extractor=None,
                requires_safety_checker=False)
    plain = StableDiffusionPipeline(unet=unet, scheduler=DDIMScheduler(**SD_DDIM), image_encoder=None, **none)
    ae = StableDiffusionAttendAndExcitePipeline(unet=unet, scheduler=DDIMScheduler(**SD_DDIM), **none)
    for pipe in (plain, ae):
        pipe.set_progress_bar_config(disable=True)
    return plain, ae


def conditioning(arch: Arch, seed: int):
    """A ComfyUI CONDITIONING of random text embeddings (77 tokens); SDXL also gets its pooled and size inputs."""
    gen = torch.Generator().manual_seed(seed)
    cond = torch.randn(1, 77, arch.context_dim, generator=gen)
    extras = {}
    if arch.pooled_dim:
        side = arch.latent * 8
        extras = {"pooled_output": torch.randn(1, arch.pooled_dim, generator=gen), "width": side, "height": side,
                  "crop_w": 0, "crop_h": 0, "target_width": side, "target_height": side}
    return [[cond, extras]]
