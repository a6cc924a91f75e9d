#!/usr/bin/env bash
# The gradient evaluation of this tree against an earlier commit's on the same GPU machine (machines differ by a
# few percent: docs/benchmarks.md, steps 15 to 17): `bench.ae_bench --eval-only` with the given arguments, run once
# in this tree and once in .device/base (`bash bench/prepare_device.sh --base REV` on the dev host), each a fresh
# process, then both results. Device call as in bench/README.md; with --compile-pass each tree compiles its own
# pass, so give each process the compilation time bench/README.md names (AB_LIMIT, seconds, default 280).
#
#   bash bench/ab_eval.sh --compile-pass --cases sd15 --batches 4
#
# Writes ab_new.json and ab_base.json (with their tables and logs) under $OUT (bench/out without one).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$root/bench/out}
limit=${AB_LIMIT:-280}
[ -f "$root/.device/base/REVISION" ] || { echo "no .device/base: run bash bench/prepare_device.sh --base REV" >&2; exit 2; }
mkdir -p "$out"
if [ -x "$root/.dev/venv/bin/python" ]; then  # the dev host (a CPU check of this script)
  py=$root/.dev/venv/bin/python comfyui=$root/.dev/comfyui-0.3.75
else  # the GPU machine: the wheels bench/prepare_device.sh put in .whl
  py=python3 comfyui=$root/.device/comfyui
  source "$root/bench/device_env.sh"
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
for tree in new base; do
  dir=$root label="working tree"
  [ $tree = base ] && dir=$root/.device/base label=$(cat "$root/.device/base/REVISION")
  started=$SECONDS
  (cd "$dir" && timeout "$limit" "$py" -m bench.ae_bench --eval-only --comfyui "$comfyui" "$@" \
     --out "$out/ab_$tree.json" > "$out/ab_$tree.log" 2>&1)
  echo "$tree ($label): exit $?, $((SECONDS - started)) s"
  grep "^One gradient evaluation" "$out/ab_$tree.log" || tail -3 "$out/ab_$tree.log"
done
