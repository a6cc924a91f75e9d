# Sourced by the toy world's GPU jobs (device_job.sh, tuning_job.sh) from the repository root with PY set: installs
# the wheels the machine lacks, exports the environment the runner needs, and puts the SD1 tokenizer's vocabulary
# and the CLIP-L config, which the toy CLIP reads and which .device/comfyui lacks, into it (carry both).
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/torchsde-*.whl .whl/trampoline-*.whl || exit 1
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 AANDE_COMFYUI=$PWD/.device/comfyui
for item in sd1_tokenizer sd1_clip_config.json; do
  [ -e ".device/comfyui/comfy/$item" ] || cp -r ".dev/comfyui-0.3.75/comfy/$item" .device/comfyui/comfy/ || {
    echo "carry .dev/comfyui-0.3.75/comfy/$item: the toy CLIP needs it" >&2; exit 1; }
done
