#!/usr/bin/env bash
# The toy world's GPU job: train the toy model (toyworld/train.py), sample, judge and draw the sanity grid
# (toyworld/sanity.py: 8 training and 8 held-out prompts x 2 images, standard / A&E / A&E at latent/2), then the
# efficacy benchmark: the evaluation runner (run_evaluation.py, here through tests/harness/evaluate.py for the
# machine's missing PyAV) on every held-out prompt of toyworld/world.py x seeds 0-7 x {standard, A&E}, with the
# judge as its metric, A&E at attention_res latent/2 (16x16 maps, as SD's 16x16 at 512x512), then at latent/4.
#
# Device call (the lead runs it; the machine has no network and no ComfyUI):
#   kind nvidia-h200, timeout_s 600,
#   carry [".device", ".whl", ".dev/comfyui-0.3.75/comfy/sd1_tokenizer", ".dev/comfyui-0.3.75/comfy/sd1_clip_config.json"],
#   command: bash toyworld/device_job.sh
# Before it, once on the dev host: bash bench/prepare_device.sh (makes .device/comfyui and .whl). .device/comfyui
# holds ComfyUI's Python files only, so the SD1 tokenizer's vocabulary and the CLIP-L config, which the toy CLIP
# reads, travel on their own and are copied into it here.
#
# Writes into $OUT (7 files): toyworld.safetensors (the weights: fp16, settings in the metadata), job.log (the GPU,
# training, sanity and runner logs), sanity.json (judge results, A&E losses, attention-on-subject checks, per
# image), sanity_grid.png, benchmark_latent2.jsonl and benchmark_latent4.jsonl (the runner's per-image lines, also
# of a run cut short), benchmark_tables.md. Time budget, from the job's start: training runs STEPS steps, capped at
# TRAIN_S (370) s of its loop, and is killed at 400 s (the weights are rewritten every 60 s while it trains); the
# sanity grid starts no call after 450 s and is killed at 470 s; the benchmark runs until 585 s (with the sanity grid
# on, latent/2 may end a few prompts short: 848 of 864 images on a 10 steps/s H200).
# Settings by environment: TEXT (training's --text-embeddings, default frozen), LATENT (training's --latent-centre,
# default zero), ABSENT (training's --absent, default 0), STEPS (default 3525): the defaults
# rebuild toyworld/weights/toyworld.safetensors bit for bit (checked on an H200 at 12.2 steps/s, 288.5 s);
# SANITY=0 skips the sanity grid (the benchmark then starts after training); BENCH=0 skips the benchmark (for a
# call that runs toyworld/repeat_job.sh on the new weights instead).
#
# Dry run of this very script on a CPU host (minutes; checks the paths, the copies and the outputs):
#   OUT=/tmp/toy TOY_DRY_RUN=1 PYTHON=.dev/venv/bin/python bash toyworld/device_job.sh
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder for the results}"
start=$(date +%s)
TRAIN_S=${TRAIN_S:-370}
TEXT=${TEXT:-frozen}
LATENT=${LATENT:-zero}
STEPS=${STEPS:-3525}
SANITY=${SANITY:-1}
BENCH=${BENCH:-1}
ABSENT=${ABSENT:-0}
PY=${PYTHON:-python3}
device=(--device cuda); train_extra=(--steps "$STEPS"); sanity_extra=(); bench_extra=(--seeds 8 --batch 8 --steps 50)
if [ "${TOY_DRY_RUN:-0}" = 1 ]; then
  device=(--device cpu); train_extra=(--quick); sanity_extra=(--steps 2 --prompts 2 --seeds 1)
  bench_extra=(--seeds 1 --batch 1 --steps 2 --prompts-per-category 1 --cpu)
fi
log="$OUT/job.log"

source toyworld/device_env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$log"

timeout "$(left 400)" "$PY" -m toyworld.train "${device[@]}" --seed 0 --out "$OUT/toyworld.safetensors" \
  --max-train-s "$TRAIN_S" --text-embeddings "$TEXT" --latent-centre "$LATENT" --absent "$ABSENT" "${train_extra[@]}" 2>&1 | tee -a "$log"
[ -f "$OUT/toyworld.safetensors" ] || { echo "training wrote no weights" >&2; exit 1; }

if [ "$SANITY" = 1 ]; then
  timeout "$(left 470)" "$PY" -m toyworld.sanity "${device[@]}" --weights "$OUT/toyworld.safetensors" \
    --out "$OUT" --deadline $(( start + 450 )) "${sanity_extra[@]}" 2>&1 | tee -a "$log"
fi
rm -f "$OUT/sanity.log" "$OUT/train.log" "$OUT/gpu.txt"

if [ "$BENCH" = 1 ]; then
  for res in 2 4; do
    toy_eval 585 "$OUT/toyworld.safetensors" "/tmp/benchmark_$res" --ae "attention_res=latent/$res" "${bench_extra[@]}"
    cp "/tmp/benchmark_$res/results-rank0.jsonl" "$OUT/benchmark_latent$res.jsonl" 2>/dev/null
    [ -f "/tmp/benchmark_$res/table1.md" ] && { echo "## A&E at latent/$res"; cat "/tmp/benchmark_$res/table1.md"; } \
      >> "$OUT/benchmark_tables.md"
  done
fi
echo "[job] finished after $(( $(date +%s) - start )) s" | tee -a "$log"
