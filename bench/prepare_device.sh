#!/usr/bin/env bash
# Prepares, on the dev host, what the GPU machine lacks for the benchmark and the GPU checks (it has no network and
# no ComfyUI):
#   .device/comfyui  the Python files of ComfyUI's library part: comfy/, nodes.py (the A&E KSampler samples through
#                    its common_ksampler) with the comfy_api/ and comfy_execution/ packages it imports, and the
#                    top-level modules they import; no tokenizer vocabularies, nothing of the server
#   .whl/            wheels of the packages missing there: diffusers (the peer), torchsde and trampoline (comfy)
# PyAV, which comfy_api imports, is missing there too: the harness's stand-in (tests/dev/stubs_av) covers it.
# Both folders are git-ignored; the device command carries them. Idempotent.
#   --base REV       also .device/base: the pack's tree at commit REV (without docs, web, example workflows and
#                    toyworld), for a same-machine comparison with this tree (bench/ab_eval.sh)
set -euo pipefail
base=
if [ "${1:-}" = --base ]; then base=${2:?usage: bench/prepare_device.sh [--base REV]}; fi
root=$(cd "$(dirname "$0")/.." && pwd)
src=${AANDE_COMFYUI:-$root/.dev/comfyui-0.3.75}
py=$root/.dev/venv/bin/python
[ -x "$py" ] || py=python3
cd "$root"

exclude=$(git rev-parse --git-path info/exclude)
for dir in .whl .device; do
  if ! git check-ignore -q "$dir/x"; then
    mkdir -p "$(dirname "$exclude")"
    echo "/$dir/" >> "$exclude"
  fi
done

[ -f "$src/comfy/samplers.py" ] || { echo "no ComfyUI at $src (run tests/dev/setup.sh or set AANDE_COMFYUI)" >&2; exit 1; }
rm -rf .device/comfyui
mkdir -p .device/comfyui
(cd "$src" && find comfy comfy_api comfy_execution -name '*.py' -not -path '*/__pycache__/*'
 ls folder_paths.py latent_preview.py node_helpers.py comfyui_version.py nodes.py protocol.py) \
  | (cd "$src" && xargs cp --parents -t "$root/.device/comfyui")

rm -rf .device/base
if [ -n "$base" ]; then
  mkdir -p .device/base
  git archive "$base" | tar -x -C .device/base --exclude=docs --exclude=web --exclude=example_workflows --exclude=toyworld
  echo "$(git rev-parse --short "$base")" > .device/base/REVISION
fi

mkdir -p .whl
for spec in diffusers==0.42.1 torchsde==0.2.6 trampoline==0.1.2; do
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$spec"
done

du -sh .device/comfyui .whl
du -shc .device .whl | tail -1
