#!/usr/bin/env bash
# The main job: set up, train the default recipe on the shipped Multi30k de→en data,
# and print BLEU and chrF on test_2016_flickr with the sacrebleu signature.
# Extra arguments go to `seq2seq-rnn train` (e.g. --set train.max_minutes=10).
# QUICKSTART_RUN_DIR picks another run directory (default runs/multi30k_de_en_lstm).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
run_dir=${QUICKSTART_RUN_DIR:-runs/multi30k_de_en_lstm}
resume=()
# A second call continues an interrupted run (or just reports a finished one); a first
# call, or one after a start killed before its first checkpoint, starts afresh.
if [ -f "$run_dir/checkpoints/last.pt" ]; then
  resume=(--resume)
fi
exec .venv/bin/seq2seq-rnn train recipes/multi30k_de_en_lstm.yaml --output-dir "$run_dir" "${resume[@]}" "$@"
