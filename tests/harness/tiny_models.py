"""Tiny SD-family models as real ComfyUI MODEL objects (comfy.model_patcher.ModelPatcher), for fast CPU tests.

Checkpoint detection refuses UNets this small, so each model is built the way ComfyUI builds a detected one:
supported_models config class -> our unet_config -> model_config.get_model() -> load_model_weights() -> ModelPatcher,
all under torch.inference_mode() (ComfyUI loads real weights as inference tensors, so tests must meet them too).
Each family keeps its real attention layout, so a 32x32 latent has 8x8 (factor 4) and 16x16 (factor 2)
cross-attention layers in input and output blocks:
- "sd1":  SD15 config, eps, context 768, 8 heads, conv proj_in; attention at factors 1, 2, 4; none at 8.
- "sd2v": SD20 config, v-prediction, context 1024, 64-channel heads, linear proj_in; as sd1.
- "sdxl": SDXL config, eps, context 2048, ADM input of 2816 (pooled 1280 + 6 size embeddings); attention at
          factors 2 and 4 (SDXL has none at full resolution).
"""
from dataclasses import dataclass

import torch

from harness.host import import_comfy
from harness.weights import random_state_dict


@dataclass(frozen=True)
class Kind:
    config: str            # class name in comfy.supported_models
    model_type: str        # comfy.model_base.ModelType member
    context_dim: int
    pooled_dim: int
    unet: dict


_COMMON = {
    "image_size": 32, "in_channels": 4, "out_channels": 4, "use_checkpoint": False,
    "use_spatial_transformer": True, "legacy": False, "transformer_depth_middle": 1,
    "use_temporal_resblock": False, "use_temporal_attention": False,
}
_SD_LEVELS = {  # four levels, as SD1/SD2: cross-attention at factors 1, 2, 4; none at 8
    "num_res_blocks": [1, 1, 1, 1], "transformer_depth": [1, 1, 1, 0],
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 0, 0],
}

KINDS = {
    "sd1": Kind("SD15", "EPS", 768, 768, {
        **_COMMON, **_SD_LEVELS, "model_channels": 32, "channel_mult": [1, 2, 2, 2], "context_dim": 768,
        "use_linear_in_transformer": False, "adm_in_channels": None}),
    "sd2v": Kind("SD20", "V_PREDICTION", 1024, 1024, {
        **_COMMON, **_SD_LEVELS, "model_channels": 64, "channel_mult": [1, 1, 2, 2], "context_dim": 1024,
        "use_linear_in_transformer": True, "adm_in_channels": None}),
    "sdxl": Kind("SDXL", "EPS", 2048, 1280, {
        **_COMMON, "num_res_blocks": [1, 1, 1], "transformer_depth": [0, 1, 1],
        "transformer_depth_output": [0, 0, 1, 1, 1, 1], "model_channels": 64, "channel_mult": [1, 2, 2],
        "context_dim": 2048, "use_linear_in_transformer": True, "num_classes": "sequential",
        "adm_in_channels": 2816}),
}


def _kind(kind):
    if kind not in KINDS:
        raise ValueError(f"unknown tiny model kind {kind!r}: use one of {sorted(KINDS)}")
    return KINDS[kind]


def tiny_model(kind, seed=0, sharpen=None, dtype=torch.float32):
    """A ModelPatcher around a tiny `kind` model with random weights from `seed`.

    sharpen: factor applied to every cross-attention query weight (attn2.to_q); random weights otherwise give
    nearly uniform attention maps, which hide whether token attention is being steered.
    dtype: the weights' and computation's dtype (float64 takes rounding out of comparisons).
    """
    spec = _kind(kind)
    import_comfy()
    import comfy.model_base
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models

    model_type = comfy.model_base.ModelType[spec.model_type]
    config = getattr(comfy.supported_models, spec.config)(spec.unet)
    # detection would derive the prediction type from real weights; these have none to read it from
    config.model_type = lambda state_dict, prefix="": model_type
    config.set_inference_dtype(dtype, None)
    device = comfy.model_management.get_torch_device()
    with torch.inference_mode():
        model = config.get_model({}, device=device)
        weights = random_state_dict(model.diffusion_model, seed)
        if sharpen is not None:
            for name in weights:
                if name.endswith("attn2.to_q.weight"):
                    weights[name] *= sharpen
        model.load_model_weights({k: v.to(dtype) for k, v in weights.items()}, "")
    return comfy.model_patcher.ModelPatcher(model, load_device=device,
                                            offload_device=comfy.model_management.unet_offload_device())


def tiny_conditioning(kind, seed, n_chunks=1):
    """ComfyUI CONDITIONING for a tiny `kind` model: random text embeddings of n_chunks x 77 tokens.

    SDXL's extra_conds also read the image size and crop from the conditioning (its ADM input).
    """
    spec = _kind(kind)
    if n_chunks < 1:
        raise ValueError(f"n_chunks must be at least 1, got {n_chunks}")
    gen = torch.Generator().manual_seed(seed)
    cond = torch.randn(1, 77 * n_chunks, spec.context_dim, generator=gen)
    extras = {"pooled_output": torch.randn(1, spec.pooled_dim, generator=gen)}
    if kind == "sdxl":
        extras.update(width=1024, height=1024, crop_w=0, crop_h=0, target_width=1024, target_height=1024)
    return [[cond, extras]]


def tiny_controlnet(seed=7):
    """A ComfyUI ControlNet for the tiny "sd1" model, with random weights built under inference mode."""
    import_comfy()
    import comfy.cldm.cldm
    import comfy.controlnet
    import comfy.model_management
    import comfy.ops
    unet = {k: v for k, v in KINDS["sd1"].unet.items() if k not in (
        "image_size", "out_channels", "transformer_depth_output", "use_temporal_resblock",
        "use_temporal_attention", "adm_in_channels")}
    device = comfy.model_management.get_torch_device()
    with torch.inference_mode():
        net = comfy.cldm.cldm.ControlNet(image_size=32, hint_channels=3, num_heads=8, device=device,
                                         dtype=torch.float32, operations=comfy.ops.disable_weight_init, **unet)
        net.load_state_dict(random_state_dict(net, seed))
    return comfy.controlnet.ControlNet(net, load_device=device, manual_cast_dtype=None)
