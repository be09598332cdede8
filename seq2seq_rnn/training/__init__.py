"""Training: a plain PyTorch loop over token-bucketed batches, in named parts.

- ``setup``: free set-up functions (``prepare_run``, ``prepare_data``, ``build_model``,
  ``build_optimizer``) that the trainer, the Ray driver and its workers and the tools call;
- ``updater``: one optimizer update (autocast, loss scaling, clipping, the non-finite skip);
- ``validator``: validation loss and BLEU/chrF, computed on rank 0 and shared;
- ``checkpoints``: last/best/step checkpoints, rotation and restore;
- ``callbacks``: the metrics file, TensorBoard, the progress display, a runner's report;
- ``loop``: :class:`Trainer` with its stop rules and signal handling;
- ``state``: counters, schedule, logging window, RNG states, ``Hooks``.
"""

from seq2seq_rnn.training.callbacks import Callback, MetricsFile, ProgressDisplay, Report, TensorBoard
from seq2seq_rnn.training.checkpoints import CheckpointManager, truncate_metrics
from seq2seq_rnn.training.loop import Parts, Trainer, build_parts
from seq2seq_rnn.training.setup import (
    Data,
    build_model,
    build_optimizer,
    close_log_file,
    prepare_data,
    prepare_process,
    prepare_run,
    seed_everything,
    to_device,
    train_batch,
    train_tokenizer,
)
from seq2seq_rnn.training.state import Hooks, LRSchedule, Progress, Window, rng_state, set_rng_state
from seq2seq_rnn.training.updater import Updater, autocast, load_scaler_state, token_loss
from seq2seq_rnn.training.validator import Validator

__all__ = [
    "Callback",
    "CheckpointManager",
    "Data",
    "Hooks",
    "LRSchedule",
    "MetricsFile",
    "Parts",
    "Progress",
    "ProgressDisplay",
    "Report",
    "TensorBoard",
    "Trainer",
    "Updater",
    "Validator",
    "Window",
    "autocast",
    "build_model",
    "build_optimizer",
    "build_parts",
    "close_log_file",
    "load_scaler_state",
    "prepare_data",
    "prepare_process",
    "prepare_run",
    "rng_state",
    "seed_everything",
    "set_rng_state",
    "to_device",
    "token_loss",
    "train_batch",
    "train_tokenizer",
    "truncate_metrics",
]
