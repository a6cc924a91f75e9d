#!/usr/bin/env bash
# A fresh-seed repeat on one GPU (toyworld/results/centred/PROTOCOL.md, addendum 4): every benchmark prompt x seeds
# FIRST_SEED.. (SEEDS of them), standard sampling and A&E at each scale factor of SCALES, A&E at attention_res
# latent/2 with the paper's other settings, on WEIGHTS (default: the centred model). Each arm is its own runner
# process on the one GPU: the toy model's sampling is bound by Python and kernel launches, not by the GPU, so the
# arms run side by side in about the time of one.
#
# Device call: kind nvidia-h200, timeout_s 600, carry as for device_job.sh
#   [".device", ".whl", ".dev/comfyui-0.3.75/comfy/sd1_tokenizer", ".dev/comfyui-0.3.75/comfy/sd1_clip_config.json"],
#   command: bash toyworld/repeat_job.sh
# Writes into $OUT: job.log, arm_standard.jsonl and arm_scale{S}.jsonl (the runner's per-image lines, also of an
# arm cut short), arms.log (the arms' runner logs, one after another), and tables.md (python -m toyworld.tuning
# compare of each scale against standard).
# Every arm is stopped DEADLINE_S (default 560) s after the job's start.
# Dry run on a CPU host: OUT=/tmp/repeat TOY_DRY_RUN=1 PYTHON=.dev/venv/bin/python bash toyworld/repeat_job.sh
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder for the results}"
start=$(date +%s)
PY=${PYTHON:-python3}
WEIGHTS=${WEIGHTS:-toyworld/weights/toyworld_centred.safetensors}
FIRST_SEED=${FIRST_SEED:-16}
SEEDS=${SEEDS:-24}
SCALES=${SCALES:-5 20 2 10}
DEADLINE_S=${DEADLINE_S:-560}
extra=(--batch 16 --steps 50 --seeds "$SEEDS")
if [ "${TOY_DRY_RUN:-0}" = 1 ]; then
  extra=(--batch 1 --steps 2 --seeds 1 --prompts-per-category 1 --cpu)
fi
log="$OUT/job.log"
source toyworld/device_env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$log"
# the arms share the machine's cores: a few threads each for the judge and the host-side work
export OMP_NUM_THREADS=3
arm() {  # arm NAME RUNNER_ARGS...: one runner process, its own log, its lines copied to $OUT as it stops
  local name=$1; shift
  ( log="$OUT/arm_$name.log"
    toy_eval "$DEADLINE_S" "$WEIGHTS" "/tmp/repeat_$name" "${extra[@]}" --first-seed "$FIRST_SEED" "$@" > /dev/null
    cp "/tmp/repeat_$name/results-rank0.jsonl" "$OUT/arm_$name.jsonl" ) &
}
arm standard --methods standard
for scale in $SCALES; do
  arm "scale$scale" --methods ae --ae attention_res=latent/2 --ae "scale_factor=$scale"
done
wait
for name in standard $(printf "scale%s " $SCALES); do
  echo "### arm $name"; cat "$OUT/arm_$name.log"
done > "$OUT/arms.log" && rm "$OUT"/arm_*.log
for scale in $SCALES; do
  echo "## A&E at scale_factor $scale against standard"
  cat "$OUT/arm_standard.jsonl" "$OUT/arm_scale$scale.jsonl" > "/tmp/pair_$scale.jsonl"
  "$PY" -m toyworld.tuning compare "/tmp/pair_$scale.jsonl" --split toyworld/results/benchmark_latent2.jsonl
  echo
done | tee "$OUT/tables.md" | tee -a "$log"
echo "[job] finished after $(( $(date +%s) - start )) s; images per arm:" $(wc -l "$OUT"/arm_*.jsonl) | tee -a "$log"
