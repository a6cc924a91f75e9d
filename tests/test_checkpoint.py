"""The small SD1.5 checkpoint goes through ComfyUI's own checkpoint detection as SD1.5 with SD's attention layout."""
import logging

import comfy.sd
import comfy.supported_models
import nodes
import torch


def test_comfyui_detects_small_sd15(small_checkpoint, caplog):
    caplog.set_level(logging.DEBUG)
    with torch.inference_mode():
        model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(small_checkpoint))
    assert type(model.model.model_config) is comfy.supported_models.SD15
    unet = model.model.model_config.unet_config
    assert (unet["model_channels"], unet["context_dim"], unet["use_linear_in_transformer"]) == (320, 768, False)
    assert unet["channel_mult"] == [1, 1, 1, 1] and unet["num_res_blocks"] == [1, 1, 1, 1]
    assert unet["transformer_depth"] == [1, 1, 1, 0]
    assert unet["transformer_depth_output"] == [1, 1, 1, 1, 1, 1, 0, 0]
    # every UNet/CLIP/VAE weight came from the file (missing ones would hold uninitialised memory)
    missing = [r.getMessage() for r in caplog.records
               if "missing" in r.getMessage() and "text_projection" not in r.getMessage()]
    assert missing == []
    assert vae.downscale_ratio == 8 and vae.latent_channels == 4

    with torch.inference_mode():
        cond = nodes.CLIPTextEncode().encode(clip, "a cat and a dog")[0]
        tokens = cond[0][0]
        assert tokens.shape == (1, 77, 768) and torch.isfinite(tokens).all()

        seen = {"input": set(), "output": set()}
        hooks = [m.register_forward_hook(lambda mod, args, out, part=name.split("_")[0]: seen[part].add(args[0].shape[1]))
                 for name, m in model.model.diffusion_model.named_modules()
                 if name.endswith("attn2") and name.split("_")[0] in seen]
        latent = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(0))
        model.model.apply_model(latent, torch.tensor([1.0]), c_crossattn=tokens)
        for hook in hooks:
            hook.remove()
        # 32x32 latent: factors 1, 2, 4 -> 32x32, 16x16, 8x8 (so 16x16 at factor 4 for SD's 64x64 latent)
        assert seen == {"input": {1024, 256, 64}, "output": {1024, 256, 64}}

        image = vae.decode(latent)
    assert image.shape == (1, 256, 256, 3) and torch.isfinite(image).all()
