#!/usr/bin/env bash
# The GPU check of issue #20, one run of at most 8 minutes on a CUDA machine:
#   fine-tune the shipped toaster patch at batch 64 (about 4 minutes of training), score it on the 280 held-out
#   shared ImageNet images at 10% area under the print preset (3 EOT draws each), print steps/s and inference FPS,
#   and write gpu-check/gpu_check.gpu.json (plus the fine-tuned patch gpu-check/toaster_gpu.png).
#
#   scripts/gpu_check.sh                     # on the GPU machine, from the repository root
#   scripts/gpu_check.sh --smoke --device cpu  # the same code path in seconds (what the test suite runs)
#   extra flags go to `patchlab bench gpu` (--batch 128, --train-seconds 200, --bf16, --out DIR, --json)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 480 "$PY" -m patchlab bench gpu "$@"
