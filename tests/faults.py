"""Fault injection for tests, as a training callback (kept out of the package): the Ray
failure test names ``tests.faults:CrashOnce`` in ``train_distributed(callbacks=...)``."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from seq2seq_rnn.training import Callback

CRASH_AT_STEP_ENV = "SEQ2SEQ_RNN_TEST_CRASH_AT_STEP"
CRASH_MARKER_ENV = "SEQ2SEQ_RNN_TEST_CRASH_MARKER"
log = logging.getLogger("seq2seq_rnn.tests")


class CrashOnce(Callback):
    """The last rank exits hard before step ``$SEQ2SEQ_RNN_TEST_CRASH_AT_STEP``, once
    (the file ``$SEQ2SEQ_RNN_TEST_CRASH_MARKER`` remembers that it happened)."""

    def __init__(self) -> None:
        self.at = int(os.environ.get(CRASH_AT_STEP_ENV) or 0)
        self.marker = Path(os.environ.get(CRASH_MARKER_ENV) or "")

    def on_step_begin(self, trainer: Any) -> None:
        hooks = trainer.hooks
        if not self.at or hooks.rank != hooks.world_size - 1 or trainer.progress.step + 1 != self.at:
            return
        if self.marker.name and not self.marker.exists():
            self.marker.write_text(f"rank {hooks.rank} exited before step {self.at}\n", encoding="utf-8")
            log.warning("test fault injection: rank %d exits before step %d", hooks.rank, self.at)
            os._exit(1)
