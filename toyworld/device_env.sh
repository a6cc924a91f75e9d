# Sourced by the toy world's GPU jobs (device_job.sh, tuning_job.sh, repeat_job.sh) from the repository root with
# PY, log and start (the job's start, date +%s) set: installs the wheels the machine lacks, exports the environment
# the runner needs, puts the SD1 tokenizer's vocabulary and the CLIP-L config, which the toy CLIP reads and which
# .device/comfyui lacks, into it (carry both), and defines left (the seconds from now to a deadline counted from
# the job's start) and toy_eval, the evaluation runner on the toy model.
left() { echo $(( start + $1 - $(date +%s) )); }
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/torchsde-*.whl .whl/trampoline-*.whl || exit 1
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 AANDE_COMFYUI=$PWD/.device/comfyui
for item in sd1_tokenizer sd1_clip_config.json; do
  [ -e ".device/comfyui/comfy/$item" ] || cp -r ".dev/comfyui-0.3.75/comfy/$item" .device/comfyui/comfy/ || {
    echo "carry .dev/comfyui-0.3.75/comfy/$item: the toy CLIP needs it" >&2; exit 1; }
done

# the benchmark's held-out prompts (toyworld/world.py) as the runner's --prompts file
"$PY" -c "import json, sys; from toyworld import world; json.dump(world.BENCHMARK_PROMPTS, sys.stdout)" \
  > /tmp/benchmark_prompts.json || exit 1

toy_eval() {  # [LAUNCH="-m torch.distributed.run ..."] toy_eval DEADLINE_S WEIGHTS OUT_DIR RUNNER_ARGS...
  # the evaluation runner (through tests/harness/evaluate.py for the machine's missing PyAV) on the toy model, on
  # the benchmark prompts at 256x256 with the judge as its metric; stopped DEADLINE_S after the job's start
  local deadline=$1 weights=$2 dir=$3; shift 3
  rm -rf "$dir"
  timeout "$(left "$deadline")" "$PY" ${LAUNCH:-} tests/harness/evaluate.py --comfyui .device/comfyui \
    --model-loader aande_pack.toyworld.model:load --weights "$weights" --out "$dir" \
    --prompts /tmp/benchmark_prompts.json --size 256 --metrics none --metric aande_pack.toyworld.judge:Judge \
    "$@" 2>&1 | grep -v "^WARNING" | tee -a "$log"
}
