"""ComfyUI imported as a library, and the pack as the package `aande_pack`, for the tests, the benchmark and the
other tools that run outside a ComfyUI server.

The ComfyUI folder is the one given, else $AANDE_COMFYUI, else .dev/comfyui-0.3.75 (tests/dev/setup.sh), else
.device/comfyui (the library part that bench/prepare_device.sh copies for the GPU machine, which has no .dev). An older host's own package pins, where
the set-up made them (.dev/site-comfyui-VER), come first on sys.path.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STUBS = ROOT / "tests" / "dev" / "stubs"        # torchvision's stand-in (tests/dev/stubs/README.md)
AV_STUB = ROOT / "tests" / "dev" / "stubs_av"   # PyAV's stand-in, where PyAV is missing (the GPU machine)
COMFY_CANDIDATES = (ROOT / ".dev" / "comfyui-0.3.75", ROOT / ".device" / "comfyui")


def find_comfyui(given: str | Path | None = None) -> Path:
    """The ComfyUI folder to import (see the module docstring); a clear error when there is none."""
    if given:
        options = [Path(given)]
    elif os.environ.get("AANDE_COMFYUI"):
        options = [Path(os.environ["AANDE_COMFYUI"])]
    else:
        options = list(COMFY_CANDIDATES)
    for path in options:
        if (path / "comfy" / "samplers.py").is_file():
            return path.resolve()
    raise ValueError(f"no ComfyUI found at {', '.join(map(str, options))}; run tests/dev/setup.sh (or "
                     "bench/prepare_device.sh), set AANDE_COMFYUI or pass the folder")


def host_site(folder: Path) -> Path:
    """Where the set-up put an older host's own package pins (tests/dev/setup.sh step 3b)."""
    return folder.parent / f"site-{folder.name}"


try:
    COMFY_DIR = find_comfyui()  # the folder import_comfy() and the server fixture use by default
except ValueError:
    COMFY_DIR = None


def import_diffusers():
    """diffusers (the reference pipelines) or the reason it is missing. Imported before ComfyUI: diffusers and
    transformers decide once whether torchvision exists, and must not meet the dev host's stand-in."""
    try:
        import diffusers
        from diffusers.pipelines.deprecated.stable_diffusion_attend_and_excite import (  # noqa: F401
            StableDiffusionAttendAndExcitePipeline)
        return diffusers, None
    except Exception as e:  # any import failure only drops the peer
        return None, f"{type(e).__name__}: {e}"


def import_comfy(comfy_dir: str | Path | None = None, cpu: bool = True):
    """Import ComfyUI's library part (comfy, nodes.py, latent_preview); args.cpu is set before model_management.

    Without a real torchvision (the CPU dev host) a few ComfyUI model files need the stand-in of tests/dev/stubs,
    visible only while ComfyUI's modules load; transformers and diffusers ask first, while it is hidden, so
    they treat torchvision as absent (tests/dev/stubs/README.md). Without PyAV (the GPU machine), nodes.py's
    comfy_api imports need tests/dev/stubs_av, on the path likewise only while ComfyUI's modules load.
    """
    if "comfy.samplers" in sys.modules:
        return sys.modules["comfy"]
    import_pack()
    from aande_pack.aande_eval.comfy_library import import_comfyui
    folder = find_comfyui(comfy_dir)
    stand_in = importlib.util.find_spec("torchvision") is None
    av_stand_in = importlib.util.find_spec("av") is None
    if stand_in:
        for name in ("transformers.utils.import_utils", "diffusers.utils"):
            try:
                importlib.import_module(name).is_torchvision_available()
            except ImportError:
                pass
    site = host_site(folder)
    if site.is_dir():
        sys.path.insert(0, str(site))
    if stand_in:
        sys.path.insert(0, str(STUBS))
    if av_stand_in:
        sys.path.insert(0, str(AV_STUB))
    try:
        import_comfyui(folder, cpu)
        import comfy.model_patcher  # noqa: F401
        import comfy.supported_models  # noqa: F401
        import comfy.utils  # noqa: F401
    finally:
        if av_stand_in:
            sys.path.remove(str(AV_STUB))
        if stand_in:
            sys.path.remove(str(STUBS))
            for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
                del sys.modules[name]
    return sys.modules["comfy"]


def import_pack():
    """The pack as the package `aande_pack` (its folder name varies), without running its top-level __init__,
    which registers nodes with a running server."""
    if "aande_pack" not in sys.modules:
        package = types.ModuleType("aande_pack")
        package.__path__ = [str(ROOT)]
        sys.modules["aande_pack"] = package
    return sys.modules["aande_pack"]
