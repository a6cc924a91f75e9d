"""A tiny SD1 UNet in diffusers and its exact ComfyUI twin, for parity tests against diffusers' pipelines.

The diffusers UNet2DConditionModel has SD1's layout (three cross-attention down blocks and a plain one, a
cross-attention mid block, mirrored up blocks) with small channels; the twin is a ComfyUI SD15 model with the
matching unet_config, loaded from the same tensors through comfy.utils.unet_to_diffusers' key map (ComfyUI's
checkpoint detection refuses UNets this small).
"""
import torch

from harness.host import import_comfy
from harness.tiny_models import KINDS
from harness.weights import random_state_dict

# diffusers' names for the layout of KINDS["sd1"]: model_channels 32, channel_mult (1, 2, 2, 2), one res block
# per level, cross-attention at the first three levels, 8 heads, context 768, conv proj_in
DIFFUSERS_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64, 64, 64),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
)
COMFY_UNET = KINDS["sd1"].unet

# DDIMScheduler as Stable Diffusion ships it
SD_DDIM = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
               clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def diffusers_unet(seed=0, sharpen=None):
    """The diffusers UNet with N(0, 1/fan_in) weights from `seed` (harness.weights).

    sharpen: factor on every attn2.to_q weight. Random weights give nearly uniform cross-attention, so A&E's
    loss sits near 1 and its refinement always runs to the limit.
    """
    from diffusers import UNet2DConditionModel
    unet = UNet2DConditionModel(**DIFFUSERS_UNET)
    weights = random_state_dict(unet, seed)
    if sharpen is not None:
        for name in weights:
            if name.endswith("attn2.to_q.weight"):
                weights[name] *= sharpen
    unet.load_state_dict(weights, strict=True)
    return unet.eval().requires_grad_(False)


def attend_and_excite_pipeline(unet):
    """diffusers' A&E pipeline around `unet`; prompts come in as embeddings, so it needs no text encoder,
    tokenizer, VAE or safety checker (all None)."""
    from diffusers import DDIMScheduler
    from diffusers.pipelines.deprecated.stable_diffusion_attend_and_excite import (
        StableDiffusionAttendAndExcitePipeline)
    pipe = StableDiffusionAttendAndExcitePipeline(
        vae=None, text_encoder=None, tokenizer=None, unet=unet, scheduler=DDIMScheduler(**SD_DDIM),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def comfy_weights(unet) -> dict:
    """The diffusers UNet's state dict under ComfyUI's key names."""
    import comfy.utils
    key_map = comfy.utils.unet_to_diffusers(COMFY_UNET)
    state = unet.state_dict()
    missing = sorted(set(state) - set(key_map))
    if missing:
        raise ValueError(f"unet_to_diffusers has no ComfyUI name for {missing[:5]}: the layouts differ")
    return {key_map[name]: tensor.detach().clone() for name, tensor in state.items()}


def comfy_twin(unet):
    """A ComfyUI ModelPatcher (SD15, eps) holding exactly the weights of the diffusers `unet`, loaded under
    inference mode as ComfyUI loads checkpoints."""
    import_comfy()
    import comfy.model_base
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models

    config = comfy.supported_models.SD15(COMFY_UNET)
    config.model_type = lambda state_dict, prefix="": comfy.model_base.ModelType.EPS
    config.set_inference_dtype(torch.float32, None)
    device = comfy.model_management.get_torch_device()
    with torch.inference_mode():
        model = config.get_model({}, device=device)
        weights = comfy_weights(unet)
        expected = set(model.diffusion_model.state_dict())
        if set(weights) != expected:
            raise ValueError(f"weights do not cover the ComfyUI UNet: missing {sorted(expected - set(weights))[:5]}, "
                             f"extra {sorted(set(weights) - expected)[:5]}")
        model.load_model_weights(weights, "")
    return comfy.model_patcher.ModelPatcher(model, load_device=device,
                                            offload_device=comfy.model_management.unet_offload_device())
