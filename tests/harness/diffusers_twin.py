"""An SD1-layout UNet in diffusers and its exact ComfyUI twin, for comparisons with diffusers' pipelines (the
parity test, the GPU checks and the benchmark).

The diffusers UNet2DConditionModel gets the layout of a harness kind ("sd1" tiny, "sd15-full"): cross-attention
down blocks where the kind has attention, mirrored up blocks, a cross-attention mid block. Its weights are drawn
by harness.weights (on its device), and the twin is a ComfyUI model loaded from the same tensors through
comfy.utils.unet_to_diffusers' key map (ComfyUI's checkpoint detection refuses small UNets).
"""
import torch

from harness.host import import_comfy
from harness.models import KINDS, comfy_config, make_model
from harness.weights import fill_random_

# diffusers' DDIMScheduler as Stable Diffusion ships it
SD_DDIM = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
               clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def diffusers_config(kind: str, latent: int = 64) -> dict:
    """UNet2DConditionModel arguments for an SD1-style kind (conv proj_in, heads by count, equal res blocks)."""
    unet = comfy_config(kind).unet_config
    per_level = unet["num_res_blocks"]
    if len(set(per_level)) != 1 or "num_heads" not in unet or unet.get("adm_in_channels"):
        raise ValueError(f"the diffusers twin is built for SD1-style UNets only, not {kind!r}")
    depth = unet["transformer_depth"]
    attention = [depth[level * per_level[0]] > 0 for level in range(len(per_level))]
    return dict(
        sample_size=latent, in_channels=4, out_channels=4, layers_per_block=per_level[0],
        block_out_channels=tuple(unet["model_channels"] * m for m in unet["channel_mult"]),
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
        cross_attention_dim=unet["context_dim"], attention_head_dim=unet["num_heads"],
        use_linear_projection=unet["use_linear_in_transformer"], norm_num_groups=32)


def diffusers_unet(kind: str = "sd1", seed: int = 0, sharpen=None, device="cpu", dtype=torch.float32):
    """diffusers' UNet2DConditionModel with the kind's layout, allocated on `device` without diffusers' own
    initialisation and drawn by harness.weights. sharpen: factor on every attn2.to_q weight (random weights
    give nearly uniform cross-attention, so A&E's loss sits near 1 and its refinement always runs to the limit)."""
    from diffusers import UNet2DConditionModel
    with torch.device("meta"):
        unet = UNet2DConditionModel(**diffusers_config(kind))
    unet = unet.to(dtype).to_empty(device=device)
    if list(unet.named_buffers()):
        raise ValueError("the diffusers UNet has buffers that a meta-device build leaves empty")
    fill_random_(unet.state_dict(), seed, sharpen)
    return unet.eval().requires_grad_(False)


def comfy_weights(unet, kind: str) -> dict:
    """The diffusers UNet's tensors under ComfyUI's names (every name must have one)."""
    import_comfy()
    import comfy.utils
    key_map = comfy.utils.unet_to_diffusers(KINDS[kind].unet)
    state = unet.state_dict()
    missing = sorted(set(state) - set(key_map))
    if missing:
        raise ValueError(f"unet_to_diffusers has no ComfyUI name for {missing[:5]}: the layouts differ")
    return {key_map[name]: tensor for name, tensor in state.items()}


def comfy_twin(unet, kind: str = "sd1", device=None):
    """A ComfyUI ModelPatcher (eps) holding exactly the weights of the diffusers `unet`, in its dtype."""
    return make_model(kind, dtype=unet.dtype, device=device, weights=comfy_weights(unet, kind))


def pipelines(unet):
    """(StableDiffusionPipeline, StableDiffusionAttendAndExcitePipeline) around `unet`. Prompts come in as
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
