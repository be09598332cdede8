#!/usr/bin/env bash
# The main job: set up, train the default recipe on the shipped Multi30k de→en data,
# and print BLEU and chrF on test_2016_flickr with the sacrebleu signature.
# Extra arguments go to `seq2seq-rnn train` (e.g. --set train.max_minutes=10).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
# --resume: a second call continues an interrupted run (or just reports a finished one).
exec .venv/bin/seq2seq-rnn train recipes/multi30k_de_en_lstm.yaml --output-dir runs/multi30k_de_en_lstm --resume "$@"
