#!/usr/bin/env bash
# The pack's test command: dev set-up, the whole suite on ComfyUI 0.3.75, then the tests marked `compat` on the
# oldest supported host, 0.3.52. Exits non-zero if any run fails or collects no tests (pytest's exit 5).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py="$root/.dev/venv/bin/python"

bash "$here/setup.sh" || { echo "[tests] set-up failed" >&2; exit 1; }
cd "$root"

status=0
suite() {  # suite HOST_VERSION PYTEST_ARGS...
  local version=$1; shift
  echo "[tests] ComfyUI $version: pytest $*"
  AANDE_COMFYUI="$root/.dev/comfyui-$version" "$py" -m pytest "$@"
  local rc=$?
  if [ "$rc" -eq 5 ]; then echo "[tests] ComfyUI $version: no tests collected" >&2; fi
  if [ "$rc" -ne 0 ]; then status=1; fi
}
suite 0.3.75 tests
suite 0.3.52 -m compat tests
if [ "$status" -eq 0 ]; then echo "[tests] all passed"; else echo "[tests] FAILED" >&2; fi
exit "$status"
