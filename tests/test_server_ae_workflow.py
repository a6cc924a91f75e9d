"""The whole A&E path in the real ComfyUI server: Select Subject Tokens -> A&E KSampler -> VAE Decode ->
Attention Map Preview, on the small random-weight SD1.5 checkpoint."""
from PIL import Image

from aande_pack.nodes.ae_options import ae_inputs

CKPT = "aande-small-sd15.safetensors"


def ae_prompt(attend_and_excite=True):
    ae = {name: spec[1]["default"] for name, spec in ae_inputs().items()}
    ae.update(attend_and_excite=attend_and_excite, max_refinement_steps=2)
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
        "2": {"class_type": "AESelectSubjectTokens",
              "inputs": {"clip": ["1", 1], "text": "a cat and a frog", "subjects": "cat, frog"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 96, "height": 64, "batch_size": 2}},
        "5": {"class_type": "AEKSampler", "inputs": {
            "model": ["1", 0], "seed": 3, "steps": 4, "cfg": 7.5, "sampler_name": "ddim",
            "scheduler": "ddim_uniform", "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0],
            "denoise": 1.0, **ae}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "AEAttentionMapPreview", "inputs": {
            "attention": ["5", 1], "image": ["6", 0], "step": "last A&E step", "step_index": 0,
            "tokens": "subjects", "opacity": 0.6, "show_loss_plot": True}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "aande-preview"}},
    }


def test_select_tokens_ae_ksampler_decode_and_preview(comfy_server):
    outputs = comfy_server.run_prompt(ae_prompt())
    preview = outputs["7"]["images"]
    saved = outputs["8"]["images"]
    assert len(preview) == 1 and preview[0]["type"] == "temp"
    assert len(saved) == 1 and saved[0]["type"] == "output"
    with Image.open(comfy_server.base_dir / "output" / saved[0]["subfolder"] / saved[0]["filename"]) as grid:
        # a row per image of the batch (2), each with a tile per subject (2) plus the loss plot, of a 96x64 image
        width, height = grid.size
        assert width >= 3 * 96 and height >= 2 * 64


def test_standard_sampling_records_too(comfy_server):
    outputs = comfy_server.run_prompt(ae_prompt(attend_and_excite=False))
    assert outputs["8"]["images"][0]["type"] == "output"
