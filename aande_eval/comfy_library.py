"""ComfyUI imported as a library from its folder, for the runner (and the test harness, which adds its stand-ins
for modules a dev machine lacks): ComfyUI is not an installable package, so its folder goes on sys.path."""
from __future__ import annotations

import sys
from pathlib import Path


def comfyui_folder(given) -> Path:
    folder = Path(given).expanduser().resolve()
    if not (folder / "comfy" / "samplers.py").is_file() or not (folder / "nodes.py").is_file():
        raise ValueError(f"{folder} is not a ComfyUI folder (it needs comfy/samplers.py and nodes.py); pass the "
                         "folder of your ComfyUI install (the one holding main.py)")
    return folder


def import_comfyui(given, cpu: bool = False):
    """Import ComfyUI's library part from its folder (args.cpu set before model_management picks a device)."""
    folder = comfyui_folder(given)
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    from comfy.cli_args import args
    args.cpu = cpu
    import comfy.model_management  # noqa: F401  (must follow args.cpu)
    import comfy.sample  # noqa: F401
    import comfy.samplers  # noqa: F401
    import comfy.sd  # noqa: F401
    import latent_preview  # noqa: F401
    import nodes  # noqa: F401  (ComfyUI's nodes.py)
    return folder
