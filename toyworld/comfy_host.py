"""The one way the toy world reaches ComfyUI: the test harness's import_comfy (tests/harness/host.py), which finds
the ComfyUI folder ($AANDE_COMFYUI, .dev/comfyui-0.3.75 or the GPU machine's .device/comfyui) and hides the
stand-ins the dev host and the GPU machine need. Inside a running ComfyUI it does nothing.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the pack's root, which holds tests/harness


def _harness():
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)


def import_pack():
    """The pack as the package `aande_pack`, without ComfyUI (for what only reads results)."""
    _harness()
    from harness.host import import_pack as harness_import_pack
    return harness_import_pack()


def import_comfy(cpu: bool = True):
    """ComfyUI's library part, imported once (`cpu` sets ComfyUI's --cpu when this is the first import)."""
    _harness()
    from harness.host import import_comfy as harness_import_comfy
    return harness_import_comfy(cpu=cpu)
