#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv.
# torch is installed first and pinned: an unpinned torch pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" || true
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet "torch==2.13.0" 2>&1 | grep -v "is ignored" || true
fi
.venv/bin/python -m pip install --quiet -e ".[ray,serve,plot,test,export,tensorboard]" 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import seq2seq_rnn, torch; print(f'seq2seq_rnn {seq2seq_rnn.__version__} with torch {torch.__version__}')"
