# Sourced by the benchmark's scripts for the GPU machine (check_run.sh, ab_eval.sh): that machine has no network, so
# the wheels bench/prepare_device.sh put in .whl are installed into /tmp/site, then the environment the bench runs
# with is exported (the wheels on the path, Hugging Face offline, Python's output unbuffered for the logs).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  "$(dirname "${BASH_SOURCE[0]}")"/../.whl/*.whl || exit 1
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
