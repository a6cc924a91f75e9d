"""Write the deterministic small SD1.5 checkpoint of the test host: `make_checkpoint.py OUT_PATH`.

Random weights from a fixed seed, fp16 safetensors, keys in the original LDM checkpoint layout
(model.diffusion_model. / cond_stage_model.transformer.text_model. / first_stage_model.), so that ComfyUI's
CheckpointLoaderSimple detects it as SD1.5:
- UNet: SD1.5's fixed widths (model_channels 320, context 768, conv proj_in) but one res block per level and
  channel_mult 1 everywhere; SD1.5's attention layout: cross-attention at downsampling factors 1, 2, 4 in input
  and output blocks and in the middle block, none at the deepest level (factor 8). A 64x64 latent therefore has
  16x16 cross-attention layers in down and up blocks.
- Text encoder: ComfyUI's fixed CLIP-L config (12 layers, 768 wide); ComfyUI's own SD1 tokenizer is used.
- VAE: TAESD, the smallest VAE that ComfyUI's VAE detection accepts with SD's 8x scale and 4 latent channels
  (detection fixes the KL autoencoder at 84M parameters).
"""
import json
import logging
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ -> harness
from harness.host import import_comfy  # noqa: E402
from harness.weights import random_state_dict  # noqa: E402

SEED = 1505

UNET = {
    "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 320,
    "num_res_blocks": [1, 1, 1, 1], "channel_mult": [1, 1, 1, 1],
    "transformer_depth": [1, 1, 1, 0], "transformer_depth_output": [1, 1, 1, 1, 1, 1, 0, 0],
    "transformer_depth_middle": 1, "context_dim": 768, "num_heads": 8, "num_head_channels": -1,
    "use_linear_in_transformer": False, "use_spatial_transformer": True, "legacy": False,
    "adm_in_channels": None, "use_checkpoint": False,
    "use_temporal_resblock": False, "use_temporal_attention": False,
}
SD_SCALE_FACTOR = 0.18215  # SD1.5's latent scale, as TAESD's vae_scale


def build_state_dict(unet_config=None, seed=SEED):
    """The whole checkpoint as fp16 tensors (modules are built on the meta device: only their key shapes count);
    unet_config: another SD1-family UNet (default: the small one above; bench/runner_throughput.py uses SD1.5's)."""
    logging.getLogger().setLevel(logging.ERROR)  # ComfyUI's import warns about optional audio models
    import_comfy()
    import comfy.clip_model
    import comfy.ops
    import comfy.sd1_clip
    import comfy.taesd.taesd
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    ops = comfy.ops.disable_weight_init
    meta = torch.device("meta")
    unet = UNetModel(**(unet_config or UNET), dtype=torch.float16, device=meta, operations=ops)
    with open(Path(comfy.sd1_clip.__file__).with_name("sd1_clip_config.json")) as f:
        clip_config = json.load(f)
    clip = comfy.clip_model.CLIPTextModel(clip_config, torch.float16, meta, ops)
    with torch.device("meta"):
        vae = comfy.taesd.taesd.TAESD()

    sd = random_state_dict(unet, seed, torch.float16, "model.diffusion_model.")
    # LDM checkpoints hold the bare HF CLIPTextModel: no text projection (ComfyUI treats it as optional)
    clip_sd = random_state_dict(clip, seed + 1, torch.float16, "cond_stage_model.transformer.")
    sd.update({k: v for k, v in clip_sd.items() if ".text_projection." not in k})
    sd.update(random_state_dict(vae, seed + 2, torch.float16, "first_stage_model."))
    sd["first_stage_model.vae_scale"] = torch.tensor(SD_SCALE_FACTOR, dtype=torch.float16)
    sd["first_stage_model.vae_shift"] = torch.tensor(0.0, dtype=torch.float16)
    return sd


def main(argv):
    if len(argv) != 2:
        raise SystemExit("usage: make_checkpoint.py OUT_PATH")
    from safetensors.torch import save_file

    out = Path(argv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    sd = build_state_dict()
    tmp = out.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in sorted(sd.items())}, str(tmp))
    tmp.replace(out)
    total = sum(v.numel() for v in sd.values())
    print(f"wrote {out} ({total / 1e6:.1f}M parameters, {out.stat().st_size / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main(sys.argv)
