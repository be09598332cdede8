#!/usr/bin/env bash
# One ready GPU check (issue #12), under 8 minutes on one modern GPU:
#   bf16 training of the default recipe for a fixed number of steps (tokens/s, peak memory,
#   finite loss, cuDNN RNN kernels in use), beam-5 decoding of test_2016 (sentences/s),
#   and a 2-worker Ray Train run when 2+ GPUs exist. Writes docs/bench-gpu.json.
# On a CPU-only machine it says so and exits 0. Extra arguments go to tools/gpu_check.py
# (--steps N, --ray-steps N, --json PATH, --work DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export RAY_AUTH_MODE=disabled HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "gpu_check: $PY cannot import torch; run bash tools/setup.sh first" >&2
  exit 2
fi
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device on this machine (CPU-only); nothing to check."
  exit 0
fi
"$PY" -c "import torch; print('gpu_check:', torch.cuda.device_count(), 'x', torch.cuda.get_device_name(0))"
exec timeout --signal=INT 480 "$PY" tools/gpu_check.py "$@"
