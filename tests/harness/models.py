"""SD-family models with random weights as real ComfyUI MODEL objects (comfy.model_patcher.ModelPatcher): tiny
ones for fast CPU tests, and SD1.5 / SDXL at full size for the GPU benchmark.

Checkpoint detection refuses UNets this small (and random weights carry no prediction type), so each model is
built the way ComfyUI builds a detected one: supported_models config class -> our unet_config ->
model_config.get_model() -> weights drawn straight into the tensors it allocated -> ModelPatcher, all under
torch.inference_mode() (ComfyUI loads real weights as inference tensors, so tests must meet them too).
Each tiny family keeps its real attention layout, so a 32x32 latent has 8x8 (factor 4) and 16x16 (factor 2)
cross-attention layers in input and output blocks:
- "sd1":  SD15 config, eps, context 768, 8 heads, conv proj_in; attention at factors 1, 2, 4; none at 8.
- "sd2v": SD20 config, v-prediction, context 1024, 64-channel heads, linear proj_in; as sd1.
- "sdxl": SDXL config, eps, context 2048, ADM input of 2816 (pooled 1280 + 6 size embeddings); attention at
          factors 2 and 4 (SDXL has none at full resolution).
- "sd15-full", "sdxl-full": ComfyUI's own unet_configs of SD1.5 and SDXL (comfy/model_detection.py).
"""
from dataclasses import dataclass

import torch

from harness.host import import_comfy
from harness.weights import fill_random_, random_state_dict


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

_FULL = {"use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
         "legacy": False, "in_channels": 4, "model_channels": 320, "use_temporal_attention": False,
         "use_temporal_resblock": False}

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
    "sd15-full": Kind("SD15", "EPS", 768, 768, {
        **_FULL, "adm_in_channels": None, "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
        "channel_mult": [1, 2, 4, 4], "transformer_depth_middle": 1, "use_linear_in_transformer": False,
        "context_dim": 768, "num_heads": 8, "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]}),
    "sdxl-full": Kind("SDXL", "EPS", 2048, 1280, {
        **_FULL, "num_classes": "sequential", "adm_in_channels": 2816, "num_res_blocks": [2, 2, 2],
        "transformer_depth": [0, 0, 2, 2, 10, 10], "channel_mult": [1, 2, 4], "transformer_depth_middle": 10,
        "use_linear_in_transformer": True, "context_dim": 2048, "num_head_channels": 64,
        "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10]}),
}


TINY_KINDS = ("sd1", "sd2v", "sdxl")  # the CPU test models; the -full kinds are for the GPU benchmark


def _kind(kind):
    if kind not in KINDS:
        raise ValueError(f"unknown tiny model kind {kind!r}: use one of {sorted(KINDS)}")
    return KINDS[kind]


def comfy_config(kind, dtype=torch.float32):
    """The comfy.supported_models config of a kind, in `dtype`, with its prediction type set (random weights
    carry none for detection to read)."""
    spec = _kind(kind)
    import_comfy()
    import comfy.model_base
    import comfy.supported_models
    model_type = comfy.model_base.ModelType[spec.model_type]
    config = getattr(comfy.supported_models, spec.config)(spec.unet)
    config.model_type = lambda state_dict, prefix="": model_type
    config.set_inference_dtype(dtype, None)
    return config


def make_model(kind, seed=0, sharpen=None, dtype=torch.float32, device=None, weights=None):
    """A ModelPatcher around a `kind` model with random weights from `seed` (harness.weights), or with `weights`
    (a state dict under ComfyUI's names, e.g. a diffusers twin's), on `device` (default: ComfyUI's device).

    sharpen: factor applied to every cross-attention query weight (attn2.to_q); random weights otherwise give
    nearly uniform attention maps, which hide whether token attention is being steered.
    dtype: the weights' and computation's dtype (float64 takes rounding out of comparisons).
    """
    import comfy.model_management
    import comfy.model_patcher
    config = comfy_config(kind, dtype)
    device = device or comfy.model_management.get_torch_device()
    with torch.inference_mode():
        model = config.get_model({}, device=device)
        state = model.diffusion_model.state_dict()
        if weights is None:
            fill_random_(state, seed, sharpen)
        else:
            if set(weights) != set(state):
                raise ValueError(f"weights do not cover the ComfyUI UNet: missing {sorted(set(state) - set(weights))[:5]}, "
                                 f"extra {sorted(set(weights) - set(state))[:5]}")
            for name, tensor in weights.items():
                state[name].copy_(tensor)
    return comfy.model_patcher.ModelPatcher(model, load_device=device,
                                            offload_device=comfy.model_management.unet_offload_device())


def float32_twin(model, kind, device=None):
    """A float32 `kind` model with `model`'s weights (a ModelPatcher of lower precision): the exact reference the
    GPU checks hold fp16 passes and runs against."""
    weights = {k: v.float() for k, v in model.model.diffusion_model.state_dict().items()}
    return make_model(kind, dtype=torch.float32, device=device, weights=weights)


def make_conditioning(kind, seed, n_chunks=1, side=1024):
    """ComfyUI CONDITIONING for a `kind` model: random text embeddings of n_chunks x 77 tokens.

    SDXL's extra_conds also read the image size and crop (`side` pixels) from the conditioning (its ADM input).
    """
    spec = _kind(kind)
    if n_chunks < 1:
        raise ValueError(f"n_chunks must be at least 1, got {n_chunks}")
    gen = torch.Generator().manual_seed(seed)
    cond = torch.randn(1, 77 * n_chunks, spec.context_dim, generator=gen)
    extras = {"pooled_output": torch.randn(1, spec.pooled_dim, generator=gen)}
    if spec.config == "SDXL":
        extras.update(width=side, height=side, crop_w=0, crop_h=0, target_width=side, target_height=side)
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
