#!/usr/bin/env bash
# Set up and run the checks: ruff, then pytest. Arguments go to pytest; without
# any, the default selection (pyproject.toml) skips tests marked slow or gpu.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
.venv/bin/ruff check seq2seq_rnn tests tools plugins
export RAY_AUTH_MODE=disabled HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
