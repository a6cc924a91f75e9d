"""Test set-up: the pack is importable as the package `aande_pack` (without running its top-level
__init__, which needs a running ComfyUI), ComfyUI is imported as a library (host: env AANDE_COMFYUI), and a
session-wide real ComfyUI server with the pack installed is available as the fixture `comfy_server`."""
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

if "aande_pack" not in sys.modules:
    _pkg = types.ModuleType("aande_pack")
    _pkg.__path__ = [str(ROOT)]
    sys.modules["aande_pack"] = _pkg

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/harness as `harness`

from harness.host import import_comfy  # noqa: E402

import_comfy()
