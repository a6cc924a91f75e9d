"""Test-and-demo-only ComfyUI custom node "Load A&E Toy Model": the toy world's trained model (toyworld/) as
MODEL, CLIP and VAE, so that the pack's nodes can be run on a model that was trained to draw the toy world.

Not part of the pack's registered nodes: the test server and the main job install this folder beside the pack
(tests/harness/server.py, extra_custom_nodes). It finds the toyworld package from its own path (the pack's root
is three folders up) and imports it under the name `aande_toyworld`, without putting the pack's root on sys.path
(whose nodes/ would shadow ComfyUI's nodes.py). Weights are the .safetensors files of toyworld/weights/, or of
the folder $AANDE_TOY_WEIGHTS when set (the tests point it at the weights of their quick training run).
"""
import importlib
import importlib.util
import os
import sys
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[3]
TOYWORLD = PACK_ROOT / "toyworld"
PACKAGE = "aande_toyworld"


def weights_dir() -> Path:
    return Path(os.environ.get("AANDE_TOY_WEIGHTS") or TOYWORLD / "weights")


def toyworld_module(name: str):
    """toyworld.<name>, with toyworld imported once as the package aande_toyworld."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACKAGE, TOYWORLD / "__init__.py",
                                                      submodule_search_locations=[str(TOYWORLD)])
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"{PACKAGE}.{name}")


class LoadAEToyModel:
    @classmethod
    def INPUT_TYPES(cls):
        files = sorted(p.name for p in weights_dir().glob("*.safetensors"))
        return {"required": {"weights": (files, {"tooltip": f"A toy-world weights file from {weights_dir()}"})}}

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load"
    CATEGORY = "testing/attend_and_excite"
    DESCRIPTION = ("Test and demo only: the small SD1-family model trained on the toy world of coloured shapes "
                   "(toyworld/), its 0-layer CLIP with the SD1 tokenizer, and its fixed pixel-space VAE.")

    def load(self, weights):
        import comfy.model_management
        device = comfy.model_management.get_torch_device()
        return toyworld_module("model").load(weights_dir() / weights, device)


NODE_CLASS_MAPPINGS = {"AELoadToyModel": LoadAEToyModel}
NODE_DISPLAY_NAME_MAPPINGS = {"AELoadToyModel": "Load A&E Toy Model"}
