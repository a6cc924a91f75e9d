#!/usr/bin/env bash
# The benchmark's runs on the GPU machine, each one device call (inside the 600 s a call may run). With the default
# pass, one call holds the checks, the 8 GiB case and the whole benchmark; with the compiled pass (the node input
# compile_pass) every model and batch compiles once, 15 s to 5 minutes, so issue 15's check run takes two calls,
# and its single-pass fidelity check a third.
#
#   bash bench/check_run.sh default   # gpu_checks (graph against eager), the 8 GiB case, the whole benchmark
#   bash bench/check_run.sh sd15      # gpu_checks (graph and compiled pass against eager), SD1.5 b1 and b4 compiled,
#                                     # diffusers b1, SD1.5's passes uncompiled
#   bash bench/check_run.sh sdxl      # the 8 GiB case, SDXL b1 compiled and not
#   bash bench/check_run.sh fidelity  # pass_fidelity: the compiled pass against eager and float32 passes at four
#                                     # latents, SDXL b1 and SD1.5 b4
#
# Writes its JSON, tables and logs under $OUT (bench/out without one). Needs .device/ and .whl/ (bench/README.md).
set -uo pipefail
part=${1:?usage: bench/check_run.sh default|sd15|sdxl|fidelity}
out=${OUT:-bench/out}
mkdir -p "$out"
source "$(dirname "$0")/device_env.sh"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
bench=(python3 -m bench.ae_bench --device cuda --comfyui .device/comfyui --repeats 2)
case $part in
  default)
    timeout 110 python3 -m bench.gpu_checks --comfyui .device/comfyui --graph-only 2>&1 | tee "$out/gpu_checks.log"
    timeout 100 python3 -m bench.memory_check --comfyui .device/comfyui --out "$out" 2>&1 | tail -5
    timeout 370 "${bench[@]}" --budget-s 300 --out "$out/ae_bench.json" 2>&1 | tee "$out/ae_bench.log"
    ;;
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
    timeout 340 "${bench[@]}" --compile-pass --cases sdxl --batches 1 --out "$out/ae_bench_sdxl.json" 2>&1 \
      | tee "$out/ae_bench_sdxl.log" | grep -v Warning
    timeout 110 "${bench[@]}" --cases sdxl --batches 1 --out "$out/ae_bench_sdxl_uncompiled.json" 2>&1 | grep -v Warning
    ;;
  fidelity)
    for arch_batch in "sdxl 1 380" "sd15 4 190"; do
      set -- $arch_batch
      timeout "$3" python3 -m bench.pass_fidelity --comfyui .device/comfyui --arch "$1" --batch "$2" --compile-pass \
        --out "$out/pass_fidelity_$1_b$2.json" 2>&1 | grep -v Warning
    done
    ;;
  *) echo "unknown part $part" >&2; exit 2 ;;
esac
