"""Test set-up: the pack is importable as the package `aande_pack` (without running its top-level
__init__, which needs a running ComfyUI), ComfyUI is imported as a library (host: env AANDE_COMFYUI), and a
session-wide real ComfyUI server with the pack installed is available as the fixture `comfy_server`."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/harness as `harness`

from harness.host import import_comfy, import_pack  # noqa: E402

import_pack()
import_comfy()

from harness.server import ComfyServer, expected_node_names  # noqa: E402

SMALL_SD15 = ROOT / ".dev" / "models" / "checkpoints" / "aande-small-sd15.safetensors"  # tests/dev/setup.sh


@pytest.fixture(scope="session")
def small_checkpoint():
    """The deterministic small SD1.5 checkpoint (tests/dev/make_checkpoint.py)."""
    if not SMALL_SD15.is_file():
        raise FileNotFoundError(f"{SMALL_SD15} is missing: run `bash tests/dev/setup.sh`")
    return SMALL_SD15


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory, small_checkpoint):
    """A running ComfyUI with the pack and the small checkpoint, already checked to register the pack's nodes."""
    server = ComfyServer(tmp_path_factory.mktemp("comfyui"), checkpoints=[small_checkpoint])
    try:
        server.start()
        server.check_registration(expected_node_names())
        yield server
    finally:
        server.stop()
