"""What happens around the loop, on named events (as Hugging Face's ``TrainerCallback``):
the metrics file, TensorBoard, the progress display and a distributed runner's report.

A callback overrides the events it needs; each receives the :class:`~seq2seq_rnn.training.Trainer`
(``trainer.progress``, ``trainer.run``, …). Events, in the order a run meets them:

- ``on_train_begin``: prepared (restored, when resuming), before the first step;
- ``on_step_begin`` / ``on_step_end(loss, tokens)``: around each update (``tokens`` 0: skipped);
- ``on_log(metrics)``: a training log line (every ``train.log_every`` steps);
- ``on_validation(metrics)``: a validation's metrics, before ``last.pt`` is written
  (a kill in between repeats the line, never loses it);
- ``on_checkpoint(metrics)``: after a validation's ``last.pt`` is written;
- ``on_train_end``: the loop ended without an error.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seq2seq_rnn.errors import ConfigError
from seq2seq_rnn.progress_bar import on_terminal, terminal_bar
from seq2seq_rnn.run.checkpoint import open_no_follow

if TYPE_CHECKING:
    from seq2seq_rnn.training.loop import Trainer

log = logging.getLogger("seq2seq_rnn.train")


class Callback:
    """Does nothing on every event; subclasses override what they need."""

    def on_train_begin(self, trainer: Trainer) -> None: ...

    def on_step_begin(self, trainer: Trainer) -> None: ...

    def on_step_end(self, trainer: Trainer, loss: float, tokens: int) -> None: ...

    def on_log(self, trainer: Trainer, metrics: dict[str, Any]) -> None: ...

    def on_validation(self, trainer: Trainer, metrics: dict[str, Any]) -> None: ...

    def on_checkpoint(self, trainer: Trainer, metrics: dict[str, Any]) -> None: ...

    def on_train_end(self, trainer: Trainer) -> None: ...


class MetricsFile(Callback):
    """Appends every log line and validation to ``metrics.jsonl`` (rank 0)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _append(self, metrics: dict[str, Any]) -> None:
        with open_no_follow(self.path) as f:  # a link put in its place is refused, never written through
            f.write(json.dumps(metrics) + "\n")

    def on_log(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        self._append(metrics)

    def on_validation(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        self._append(metrics)


class TensorBoard(Callback):
    """The same numbers as scalars in ``RUN_DIR/tensorboard/`` (``train.tensorboard: true``)."""

    def __init__(self, folder: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "train.tensorboard: true needs the tensorboard package: pip install 'seq2seq_rnn[tensorboard]' "
                "(or pip install tensorboard), or set train.tensorboard: false"
            ) from None
        self.writer = SummaryWriter(log_dir=str(folder))

    def _write(self, metrics: dict[str, Any]) -> None:
        for key, value in metrics.items():
            if key != "step" and isinstance(value, int | float):
                self.writer.add_scalar(key, value, metrics["step"])
        self.writer.flush()

    def on_log(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        self._write(metrics)

    def on_validation(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        self._write(metrics)


class ProgressDisplay(Callback):
    """A tqdm bar of steps on a terminal; otherwise each training log line in the log."""

    def __init__(self, terminal: bool | None = None) -> None:
        self.terminal = on_terminal() if terminal is None else terminal
        self.bar: Any = None

    def on_train_begin(self, trainer: Trainer) -> None:
        if self.terminal and trainer.hooks.is_main:
            total = trainer.recipe.train.max_steps or None
            self.bar = terminal_bar(total, initial=trainer.progress.step, unit="step")

    def on_step_end(self, trainer: Trainer, loss: float, tokens: int) -> None:
        if self.bar is not None:
            self.bar.set_postfix(
                loss=f"{loss / max(tokens, 1):.3f}", tok_s=f"{trainer.window.rate():.0f}", refresh=False
            )
            self.bar.update(1)

    def on_log(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        if not self.terminal:
            log.info(
                "step %d epoch %d: loss %.3f, %.0f tok/s, lr %.2e",
                metrics["step"],
                metrics["epoch"],
                metrics["loss"],
                metrics["tokens_per_sec"],
                metrics["lr"],
            )

    def on_train_end(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Report(Callback):
    """Hands each checkpointed validation to a distributed runner (``Hooks.report``): every rank
    calls it (Ray's report is a barrier); rank 0 passes its checkpoints folder."""

    def on_checkpoint(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        report = trainer.hooks.report
        if report is not None:
            report(metrics, trainer.run.checkpoints if trainer.hooks.is_main else None)
