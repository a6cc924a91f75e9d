#!/usr/bin/env bash
# Issue 15's check run on the GPU machine, in two device calls (each inside the 600 s a call may run): with the
# compiled pass (the node input compile_pass) every model and batch compiles once, 15 s to 2.5 minutes, so one
# call cannot hold the checks and the whole benchmark.
#
#   bash bench/check_run.sh sd15   # gpu_checks (graph and compiled pass against eager), SD1.5 b1 and b4, diffusers b1,
#                                  # SD1.5's passes uncompiled
#   bash bench/check_run.sh sdxl   # the 8 GiB case, SDXL b1 compiled and not, a new process's compilation from the cache
#
# Writes its JSON, tables and logs under $OUT (bench/out without one). Needs .device/ and .whl/ (bench/README.md).
set -uo pipefail
part=${1:?usage: bench/check_run.sh sd15|sdxl}
out=${OUT:-bench/out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
bench=(python3 -m bench.ae_bench --device cuda --comfyui .device/comfyui --repeats 2)
case $part in
  sd15)
    timeout 200 python3 -m bench.gpu_checks --comfyui .device/comfyui --graph-only --compile-pass 2>&1 \
      | tee "$out/gpu_checks.log"
    timeout 300 "${bench[@]}" --compile-pass --cases sd15,diffusers --budget-s 230 --out "$out/ae_bench_sd15.json" 2>&1 \
      | tee "$out/ae_bench_sd15.log" | grep -v Warning
    # the same passes uncompiled, for the comparison on this machine
    timeout 70 "${bench[@]}" --eval-only --cases sd15 --out "$out/sd15_uncompiled_eval.json" 2>&1 | grep "one gradient evaluation"
    ;;
  sdxl)
    timeout 100 python3 -m bench.memory_check --comfyui .device/comfyui --out "$out" 2>&1 | tail -5
    timeout 250 "${bench[@]}" --compile-pass --cases sdxl --batches 1 --out "$out/ae_bench_sdxl.json" 2>&1 \
      | tee "$out/ae_bench_sdxl.log" | grep -v Warning
    # a new process: Inductor's disk cache (this machine's) holds the pass compiled above
    timeout 90 "${bench[@]}" --compile-pass --eval-only --cases sdxl --batches 1 --out /tmp/sdxl_cached.json 2>&1 \
      | grep "one gradient evaluation" | tee "$out/sdxl_cached.txt"
    timeout 110 "${bench[@]}" --cases sdxl --batches 1 --out "$out/ae_bench_sdxl_uncompiled.json" 2>&1 | grep -v Warning
    ;;
  *) echo "unknown part $part" >&2; exit 2 ;;
esac
