"""Test set-up: the pack is importable as the package `aande_pack` (without running its top-level
__init__, which needs a running ComfyUI), ComfyUI is imported as a library (host: env AANDE_COMFYUI), and a
session-wide real ComfyUI server with the pack installed is available as the fixture `comfy_server`; browser
tests take `frontend_server` instead, which runs them once on that server's pinned frontend and once on a
second server with the newest frontend, and `browser`, one headless chromium for the module's pages."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/harness as `harness`

from harness.host import import_comfy, import_pack  # noqa: E402

import_pack()
import_comfy()

from harness.browser import chromium  # noqa: E402
from harness.server import ComfyServer, expected_node_names, newest_frontend_root  # noqa: E402

SMALL_SD15 = ROOT / ".dev" / "models" / "checkpoints" / "aande-small-sd15.safetensors"  # tests/dev/setup.sh


@pytest.fixture(scope="session")
def small_checkpoint():
    """The deterministic small SD1.5 checkpoint (tests/dev/make_checkpoint.py)."""
    if not SMALL_SD15.is_file():
        raise FileNotFoundError(f"{SMALL_SD15} is missing: run `bash tests/dev/setup.sh`")
    return SMALL_SD15


def serve(base_dir, checkpoint, **options):
    """A ComfyServer with the pack and `checkpoint`, checked to register the pack's nodes, stopped afterwards."""
    server = ComfyServer(base_dir, checkpoints=[checkpoint], **options)
    try:
        server.start()
        server.check_registration(expected_node_names())
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory, small_checkpoint):
    """A running ComfyUI with the pack and the small checkpoint, already checked to register the pack's nodes,
    serving the frontend the host pins."""
    yield from serve(tmp_path_factory.mktemp("comfyui"), small_checkpoint)


@pytest.fixture(scope="session")
def comfy_server_newest_frontend(tmp_path_factory, small_checkpoint):
    """As comfy_server, with the newest frontend (--front-end-root); only started when a test asks for it."""
    yield from serve(tmp_path_factory.mktemp("comfyui-newest-frontend"), small_checkpoint,
                     front_end_root=newest_frontend_root(), log_name="server-newest-frontend")


@pytest.fixture(scope="module", params=["comfy_server", "comfy_server_newest_frontend"],
                ids=["pinned-frontend", "newest-frontend"])
def frontend_server(request):
    """A running server for each frontend the browser tests cover: the one the host pins (1.32.9 for ComfyUI
    0.3.75), and the newest (harness.server.NEWEST_FRONTEND). Module-scoped (the servers are the session's): a
    session-scoped parameter would make pytest run every module's browser tests ahead of all other tests."""
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def browser():
    """One headless chromium for a module's pages, on both frontends (each page gets its own context). Not the
    session's: while Playwright's sync API is open, asyncio.run() fails in every later test."""
    with chromium() as instance:
        yield instance
