#!/usr/bin/env bash
# The toy world's second GPU job (toyworld/tuning.py has the protocol): A&E's scale factor re-derived on tuning
# seeds 100-102 of every benchmark prompt (A&E only, scale factors 2, 5, 10, 20), then standard vs A&E at the
# chosen scale on fresh seeds 8-15, on the committed weights (toyworld/weights/toyworld.safetensors), A&E at
# attention_res latent/2 as in the first benchmark. The test run goes through torchrun with one process (issue 16's
# single-GPU case: the log's "[eval]" lines give its throughput and the time to the merged table).
#
# Device call: kind nvidia-h200, timeout_s 600, carry as for device_job.sh
#   [".device", ".whl", ".dev/comfyui-0.3.75/comfy/sd1_tokenizer", ".dev/comfyui-0.3.75/comfy/sd1_clip_config.json"],
#   command: bash toyworld/tuning_job.sh
# Writes into $OUT: job.log, tuning_scale{2,5,10,20}.jsonl, choice.txt, test.jsonl (the runner's per-image lines)
# and test_table.md (python -m toyworld.tuning compare). No run starts after 585 s from the job's start.
# Dry run on a CPU host: OUT=/tmp/tune TOY_DRY_RUN=1 PYTHON=.dev/venv/bin/python bash toyworld/tuning_job.sh
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder for the results}"
start=$(date +%s)
PY=${PYTHON:-python3}
weights=toyworld/weights/toyworld.safetensors
extra=(--ae attention_res=latent/2 --batch 16 --steps 50); tune_seeds=3; test_seeds=8
if [ "${TOY_DRY_RUN:-0}" = 1 ]; then
  extra=(--ae attention_res=latent/2 --batch 1 --steps 2 --prompts-per-category 1 --cpu); tune_seeds=1; test_seeds=1
fi
log="$OUT/job.log"
source toyworld/device_env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$log"
for scale in 2 5 10 20; do
  toy_eval 330 "$weights" "/tmp/tune_$scale" "${extra[@]}" --methods ae --seeds "$tune_seeds" --first-seed 100 \
    --ae "scale_factor=$scale"
  cp "/tmp/tune_$scale/results-rank0.jsonl" "$OUT/tuning_scale$scale.jsonl"
done
"$PY" -m toyworld.tuning choose "$OUT"/tuning_scale*.jsonl | tee "$OUT/choice.txt" | tee -a "$log"
scale=$(tail -1 "$OUT/choice.txt")
LAUNCH="-m torch.distributed.run --nproc-per-node 1" toy_eval 585 "$weights" /tmp/test "${extra[@]}" \
  --seeds "$test_seeds" --first-seed 8 --ae "scale_factor=$scale"
cp /tmp/test/results-rank0.jsonl "$OUT/test.jsonl"
"$PY" -m toyworld.tuning compare "$OUT/test.jsonl" --split toyworld/results/benchmark_latent2.jsonl \
  | tee "$OUT/test_table.md" | tee -a "$log"
echo "[job] finished after $(( $(date +%s) - start )) s" | tee -a "$log"
