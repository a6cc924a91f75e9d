"""The pack inside a real ComfyUI server: its nodes register, a plain SD1.5 workflow runs on the small
checkpoint, and the registration check catches a pack that fails to import."""
import shutil

import pytest
from PIL import Image

from harness.host import ROOT
from harness.server import PACK_NAME, ComfyServer, RegistrationError, expected_node_names

CKPT = "aande-small-sd15.safetensors"


@pytest.mark.compat
def test_pack_nodes_are_registered(comfy_server):
    comfy_server.check_registration(expected_node_names())
    info = comfy_server.get("/object_info")
    from_pack = {name for name, node in info.items() if node.get("python_module") == f"custom_nodes.{PACK_NAME}"}
    assert from_pack == expected_node_names()
    assert CKPT in info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]


@pytest.mark.compat
def test_txt2img_workflow_on_the_small_checkpoint(comfy_server):
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat and a dog", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "seed": 0, "steps": 2, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
            "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0], "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "aande-smoke"}},
    }
    images = comfy_server.run_prompt(prompt)["7"]["images"]
    assert len(images) == 1 and images[0]["type"] == "output"
    path = comfy_server.base_dir / "output" / images[0]["subfolder"] / images[0]["filename"]
    with Image.open(path) as image:
        assert image.size == (64, 64)


def test_registration_check_catches_a_broken_pack(tmp_path):
    """A copy of the pack whose nodes/__init__.py imports a module that does not exist."""
    pack = tmp_path / "pack"
    pack.mkdir()
    shutil.copy(ROOT / "__init__.py", pack)
    for folder in ("nodes", "aande_core", "aande_metrics", "web"):
        shutil.copytree(ROOT / folder, pack / folder, ignore=shutil.ignore_patterns("__pycache__"))
    init = pack / "nodes" / "__init__.py"
    init.write_text(init.read_text() + "\nfrom . import module_broken_on_purpose  # noqa\n")
    server = ComfyServer(tmp_path / "base", pack_dir=pack, log_name="server-broken-pack")
    try:
        server.start()
        with pytest.raises(RegistrationError, match="did not import"):
            server.check_registration(expected_node_names())
    finally:
        server.stop()
    assert "module_broken_on_purpose" in server.log_path.read_text()
