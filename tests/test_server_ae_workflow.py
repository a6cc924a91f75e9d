"""The whole A&E path in the real ComfyUI server: Select Subject Tokens -> A&E KSampler -> VAE Decode ->
Attention Map Preview, and Apply Attend-and-Excite in front of a stock KSampler, on the small random-weight SD1.5
checkpoint."""
import numpy as np
from PIL import Image

from aande_pack.nodes.declarations.inputs import ae_inputs

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


def saved_pixels(server, entry):
    with Image.open(server.base_dir / "output" / entry["subfolder"] / entry["filename"]) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def test_standard_sampling_is_the_stock_ksamplers_and_its_preview_says_standard(comfy_server):
    """attend_and_excite off: the image equals a stock KSampler's with the same seed and settings, while the
    record still fills the preview, whose header (the mode) differs from the A&E run's."""
    prompt = ae_prompt(attend_and_excite=False)
    prompt["9"] = {"class_type": "KSampler", "inputs": {
        k: v for k, v in prompt["5"]["inputs"].items() if k in ("model", "seed", "steps", "cfg", "sampler_name",
                                                                "scheduler", "positive", "negative", "latent_image",
                                                                "denoise")}}
    prompt["10"] = {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["1", 2]}}
    prompt["11"] = {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": "aande-stock"}}
    prompt["12"] = {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "aande-off"}}
    outputs = comfy_server.run_prompt(prompt)
    standard, stock = (saved_pixels(comfy_server, outputs[k]["images"][0]) for k in ("12", "11"))
    assert standard.shape == (64, 96, 3) and np.array_equal(standard, stock)
    standard_preview = saved_pixels(comfy_server, outputs["8"]["images"][0])
    ae_outputs = comfy_server.run_prompt(ae_prompt(attend_and_excite=True))
    ae_preview = saved_pixels(comfy_server, ae_outputs["8"]["images"][0])
    assert standard_preview.shape == ae_preview.shape
    header = slice(0, 20)  # the header band holds the mode: "A&E" or "standard (A&E off, recorded only)"
    assert not np.array_equal(standard_preview[header], ae_preview[header])


def stock_ksampler_prompt(patched: bool, prefix: str):
    """Load Checkpoint -> [Apply Attend-and-Excite ->] a stock KSampler -> VAE Decode -> Save Image, as a user
    wires the model patch."""
    ae = {name: spec[1]["default"] for name, spec in ae_inputs().items()}
    ae.update(max_refinement_steps=2)
    prompt = ae_prompt()
    prompt["4"]["inputs"]["batch_size"] = 1
    prompt["5"] = {"class_type": "KSampler", "inputs": {
        "model": ["9", 0] if patched else ["1", 0], "seed": 11, "steps": 4, "cfg": 7.5, "sampler_name": "ddim",
        "scheduler": "ddim_uniform", "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0],
        "denoise": 1.0}}
    prompt["8"] = {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": prefix}}
    del prompt["7"]
    if patched:
        prompt["9"] = {"class_type": "AEApplyAttendAndExcite", "inputs": {"model": ["1", 0], **ae}}
    return prompt


def test_the_model_patch_changes_a_stock_ksamplers_image_and_leaves_plain_sampling_as_it_was(comfy_server):
    """Same seed and settings: the patched stock KSampler's image differs from the plain one's, and a plain
    KSampler queued after the patched run, executed anew (not from ComfyUI's cache), gives the identical image."""
    def run(patched, prefix):
        prompt_id = comfy_server.queue_prompt(stock_ksampler_prompt(patched, prefix))
        outputs = comfy_server.wait_for(prompt_id)
        messages = comfy_server.get(f"/history/{prompt_id}")[prompt_id]["status"]["messages"]
        cached = {n for kind, data in messages if kind == "execution_cached" for n in data["nodes"]}
        return saved_pixels(comfy_server, outputs["8"]["images"][0]), cached

    before, _ = run(False, "aande-plain-before")
    patched, cached = run(True, "aande-patched")
    after, cached_after = run(False, "aande-plain-after")
    assert "5" not in cached and "5" not in cached_after  # each KSampler really sampled
    assert before.shape == (64, 96, 3)
    assert not np.array_equal(patched, before)
    assert np.array_equal(after, before)
