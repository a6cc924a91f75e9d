"""A real ComfyUI server process with the pack installed as a custom node, driven over its HTTP API.

A pack that fails to import only makes ComfyUI log "IMPORT FAILED" and carry on, so `check_registration` is the
guard: the pack's own import line must be clean and every key of its NODE_CLASS_MAPPINGS must be in /object_info.
"""
import importlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from harness.host import COMFY_DIR, ROOT, STUBS, host_site

SERVER_SITE = ROOT / "tests" / "dev" / "server_site"  # its sitecustomize hides STUBS from transformers

PACK_NAME = "attend-and-excite"
OUTPUT_DIR = ROOT / "tests" / "output"  # git-ignored: server logs, for debugging
# the newest ComfyUI frontend, which tests/dev/setup.sh installs beside the one ComfyUI pins (keep both in step)
NEWEST_FRONTEND = "1.58.1"


def newest_frontend_root():
    """The static files of the newest frontend (for ComfyServer's front_end_root); a clear error when missing."""
    static = ROOT / ".dev" / f"frontend-{NEWEST_FRONTEND}" / "comfyui_frontend_package" / "static"
    if not (static / "index.html").is_file():
        raise FileNotFoundError(f"frontend {NEWEST_FRONTEND} is not at {static}: run `bash tests/dev/setup.sh`")
    return static


class ServerError(RuntimeError):
    """The server did not start, refused a prompt, or a prompt failed; the message carries the log tail."""


class RegistrationError(ServerError):
    """The pack did not import in the server, or some of its nodes are not registered."""


def expected_node_names():
    """The node keys the pack declares, read from the pack itself (ComfyUI must already be importable)."""
    return set(importlib.import_module("aande_pack.nodes").NODE_CLASS_MAPPINGS)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """`python main.py --cpu` on a fresh base directory: custom_nodes/<PACK_NAME> links to `pack_dir`, each folder
    of `extra_custom_nodes` is linked beside it under its own name (test-only node packs such as
    tests/demo_nodes/aande_toy_loader), and models/checkpoints/ links to each of `checkpoints`. The frontend is
    the one the host pins, or the static files at `front_end_root` (--front-end-root), to test the pack in
    another frontend version."""

    def __init__(self, base_dir, pack_dir=ROOT, checkpoints=(), log_name="server", front_end_root=None,
                 extra_custom_nodes=()):
        self.base_dir = Path(base_dir)
        self.pack_dir = Path(pack_dir)
        self.checkpoints = [Path(c) for c in checkpoints]
        self.extra_custom_nodes = [Path(p) for p in extra_custom_nodes]
        self.log_name = log_name
        self.front_end_root = None if front_end_root is None else Path(front_end_root)
        self.log_path = None
        self.port = None
        self.process = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=120):
        (self.base_dir / "custom_nodes").mkdir(parents=True, exist_ok=True)
        (self.base_dir / "custom_nodes" / PACK_NAME).symlink_to(self.pack_dir.resolve(), target_is_directory=True)
        for folder in self.extra_custom_nodes:
            (self.base_dir / "custom_nodes" / folder.name).symlink_to(folder.resolve(), target_is_directory=True)
        models = self.base_dir / "models" / "checkpoints"
        models.mkdir(parents=True, exist_ok=True)
        for ckpt in self.checkpoints:
            (models / ckpt.name).symlink_to(ckpt.resolve())
        self.port = _free_port()
        # named by port: test sessions running side by side must not share a log
        self.log_path = OUTPUT_DIR / f"{self.log_name}-{COMFY_DIR.name}-{self.port}.log"
        path = [str(host_site(COMFY_DIR))] if host_site(COMFY_DIR).is_dir() else []
        path += [str(SERVER_SITE), str(STUBS)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(path))
        OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
        frontend = [] if self.front_end_root is None else ["--front-end-root", str(self.front_end_root)]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(COMFY_DIR / "main.py"), "--cpu", "--listen", "127.0.0.1",
                 "--port", str(self.port), "--base-directory", str(self.base_dir),
                 "--database-url", "sqlite:///:memory:", "--disable-auto-launch", *frontend],
                cwd=self.base_dir, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"ComfyUI exited with {self.process.returncode} while starting\n{self.log_tail()}")
            try:
                self.get("/system_stats")
                return self
            except OSError:  # not listening yet (URLError, refused, timeout)
                time.sleep(0.5)
        self.stop()
        raise ServerError(f"ComfyUI did not answer within {timeout}s\n{self.log_tail()}")

    def stop(self):
        """Terminate the server by its PID, then kill it if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)

    def log_tail(self, lines=60):
        if self.log_path is None or not self.log_path.exists():
            return "(no server log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return f"--- last {lines} lines of {self.log_path} ---\n" + "\n".join(text[-lines:])

    def _request(self, path, payload=None, timeout=30):
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"null")

    def get(self, path):
        return self._request(path)

    def check_registration(self, expected):
        """Raise RegistrationError unless the pack imported cleanly and every name in `expected` is a node."""
        pack_path = str(self.base_dir / "custom_nodes" / PACK_NAME)
        import_lines = [line for line in self.log_path.read_text(errors="replace").splitlines()
                        if " seconds" in line and line.rstrip().endswith(pack_path)]
        if not import_lines or any("IMPORT FAILED" in line for line in import_lines):
            raise RegistrationError(f"the pack did not import in ComfyUI: {import_lines or 'no import line'}\n"
                                    f"{self.log_tail()}")
        missing = set(expected) - set(self.get("/object_info"))
        if missing:
            raise RegistrationError(f"nodes missing from /object_info: {sorted(missing)}\n{self.log_tail()}")

    def queue_prompt(self, prompt):
        """POST an API-format prompt; return its prompt_id. A prompt that fails validation raises."""
        try:
            answer = self._request("/prompt", {"prompt": prompt, "client_id": uuid.uuid4().hex})
        except urllib.error.HTTPError as e:
            raise ServerError(f"/prompt refused the prompt ({e.code}): {e.read().decode(errors='replace')}\n"
                              f"{self.log_tail()}") from None
        return answer["prompt_id"]

    def wait_for(self, prompt_id, timeout=300):
        """Poll /history/<id> until the prompt finishes; return its outputs, or raise with the server's error."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{prompt_id}").get(prompt_id)
            if entry:  # history holds finished prompts only
                status = entry.get("status") or {}
                if status.get("status_str") != "success":
                    errors = [m for m in status.get("messages", []) if m[0] == "execution_error"]
                    raise ServerError(f"prompt {prompt_id} failed: {json.dumps(errors, indent=1)}\n"
                                      f"{self.log_tail()}")
                return entry["outputs"]
            if self.process.poll() is not None:
                raise ServerError(f"ComfyUI exited with {self.process.returncode}\n{self.log_tail()}")
            time.sleep(0.25)
        raise ServerError(f"prompt {prompt_id} did not finish within {timeout}s\n{self.log_tail()}")

    def run_prompt(self, prompt, timeout=300):
        return self.wait_for(self.queue_prompt(prompt), timeout)
