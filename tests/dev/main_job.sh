#!/usr/bin/env bash
# The pack's main job: example workflow (a) (SD1.5 Attend-and-Excite + Attention Map Preview) on a real, headless
# ComfyUI with the pack; writes the image and the attention preview to --out and prints their paths.
#   bash tests/dev/main_job.sh [--ckpt PATH_TO_REAL_CHECKPOINT] [--prompt ...] [--subjects ...] [--out DIR]
#                              [--size PIXELS] [--steps N] [--seed N]
# On a fresh machine it first does the development set-up (tests/dev/setup.sh, idempotent).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bash "$here/setup.sh"
exec "$root/.dev/venv/bin/python" "$here/main_job.py" "$@"
