"""ComfyUI as a library and the pack as the package `aande_pack`, importing as little of either as the bench needs.

The pack's nodes/__init__ is not run: it would also load the token picker and the preview node. Only
nodes/ksampler_node.py (and what it imports: comfy.sample, comfy.samplers, comfy.utils, latent_preview) loads.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUBS = ROOT / "tests" / "dev" / "stubs"
COMFY_CANDIDATES = (ROOT / ".device" / "comfyui", ROOT / ".dev" / "comfyui-0.3.75")


def find_comfyui(given: str | None) -> Path:
    """The ComfyUI folder: the argument, else $AANDE_COMFYUI, else .device/comfyui, else .dev/comfyui-0.3.75."""
    options = [Path(given)] if given else [Path(os.environ["AANDE_COMFYUI"])] if os.environ.get("AANDE_COMFYUI") \
        else list(COMFY_CANDIDATES)
    for path in options:
        if (path / "comfy" / "samplers.py").is_file():
            return path.resolve()
    raise ValueError(f"no ComfyUI found at {', '.join(map(str, options))}; run bench/prepare_device.sh or pass "
                     "--comfyui PATH")


def import_diffusers():
    """diffusers (the peer) or the reason it is missing. Imported before ComfyUI: diffusers and transformers
    decide once whether torchvision exists, and must not meet the dev host's stand-in."""
    try:
        import diffusers
        from diffusers.pipelines.deprecated.stable_diffusion_attend_and_excite import (  # noqa: F401
            StableDiffusionAttendAndExcitePipeline)
        from diffusers.pipelines.stable_diffusion import StableDiffusionPipeline  # noqa: F401
        return diffusers, None
    except Exception as e:  # any import failure only drops the peer
        return None, f"{type(e).__name__}: {e}"


def import_comfy(comfy_dir: Path, cpu: bool):
    """Import ComfyUI's library part. Without a real torchvision (the CPU dev host) a few model files need the
    stand-in of tests/dev/stubs, visible only while ComfyUI's modules load."""
    stand_in = importlib.util.find_spec("torchvision") is None and STUBS.is_dir()
    if stand_in:
        try:  # transformers too decides once; let it see no torchvision before the stand-in shows
            import transformers.utils.import_utils as tf_imports
            tf_imports.is_torchvision_available()
        except ImportError:
            pass
    sys.path.insert(0, str(comfy_dir))
    if stand_in:
        sys.path.insert(0, str(STUBS))
    try:
        from comfy.cli_args import args
        if cpu:
            args.cpu = True
        import comfy.model_management  # noqa: F401  (must follow args.cpu)
        import comfy.model_patcher  # noqa: F401
        import comfy.sample  # noqa: F401
        import comfy.samplers  # noqa: F401
        import comfy.supported_models  # noqa: F401
        import comfy.utils  # noqa: F401
        import latent_preview  # noqa: F401
    finally:
        if stand_in:
            sys.path.remove(str(STUBS))
            for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
                del sys.modules[name]
    return sys.modules["comfy"]


def import_pack():
    """The pack's sampler modules, under the package name `aande_pack` (its folder name varies)."""
    for name, path in (("aande_pack", ROOT), ("aande_pack.nodes", ROOT / "nodes")):
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = [str(path)]
            sys.modules[name] = module
    from aande_pack.nodes import ae_options, ae_sampler, ksampler_node
    return ae_options, ae_sampler, ksampler_node
