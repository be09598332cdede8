"""Ray Train (data-parallel training) and Ray Tune (sweeps) for seq2seq_rnn.

The only part of the package that imports ``ray``; install it with
``pip install 'seq2seq_rnn[ray]'``. Entry points::

    train_distributed(recipe, run_dir, ...)   # seq2seq-rnn train RECIPE --workers N
    run_sweep(recipe, output_dir, ...)        # seq2seq-rnn tune RECIPE
    TranslateBatch                            # a Ray Data map_batches stage (text → translation)
    translate_files(run_dir, inputs, output)  # seq2seq-rnn translate RUN_DIR --ray --input FILES --output DIR
"""

from __future__ import annotations

from seq2seq_rnn.integrations.ray.train import train_distributed
from seq2seq_rnn.integrations.ray.translate import TranslateBatch, translate_files
from seq2seq_rnn.integrations.ray.tune import run_sweep

__all__ = ["TranslateBatch", "run_sweep", "train_distributed", "translate_files"]
