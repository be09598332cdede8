"""The checkpoints a training run writes: ``last.pt`` (everything resume needs), ``best.pt``
(weights of the best validation) and ``step-*.pt`` (weights kept for averaging), written
atomically by rank 0, and the restore of ``last.pt``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seq2seq_rnn.config import Recipe
from seq2seq_rnn.run.checkpoint import (
    check_fingerprint,
    fingerprint,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
    write_text_atomic,
)
from seq2seq_rnn.run.directory import RunDir, read_metrics
from seq2seq_rnn.training.state import LRSchedule, Progress, Window, rng_state, set_rng_state
from seq2seq_rnn.training.updater import load_scaler_state

log = logging.getLogger("seq2seq_rnn.train")


class CheckpointManager:
    """Writes and restores the checkpoints of one run; only the main rank writes."""

    def __init__(
        self,
        recipe: Recipe,
        run: RunDir,
        is_main: bool,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: LRSchedule,
        scaler: torch.amp.GradScaler,
        window: Window,
        progress: Progress,
        tokenizer_files: list[Path],
    ) -> None:
        self.run, self.is_main, self.keep = run, is_main, recipe.train.keep_checkpoints
        self.model, self.optimizer, self.schedule, self.scaler = model, optimizer, schedule, scaler
        self.window, self.progress = window, progress
        self.fingerprint = fingerprint(tokenizer_files, recipe.model)

    def payload(self, kind: str) -> dict[str, Any]:
        """What a checkpoint of ``kind`` holds: 'step' the weights; 'best' also the counters;
        'last' everything a bitwise resume needs."""
        state: dict[str, Any] = {"model": self.model.state_dict()}
        if kind == "last":
            state |= {
                "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict(),
                "window": self.window.state_dict(),
            }
        if kind in ("last", "best"):
            state["progress"] = vars(self.progress).copy()
        if kind == "last":
            state["rng"] = rng_state()
        state["fingerprint"] = self.fingerprint
        return state

    def save_last(self) -> None:
        if self.is_main:
            save_checkpoint(self.run.last, self.payload("last"))
            self.run.end_start()  # from now on the run's files are trained work, never cleaned

    def save_best(self) -> None:
        if self.is_main:
            save_checkpoint(self.run.best, self.payload("best"))

    def keep_step(self) -> None:
        """Weights of this validation for averaging; only the newest ``keep_checkpoints`` stay."""
        if not self.keep or not self.is_main:
            return
        save_checkpoint(self.run.step_checkpoint(self.progress.step), self.payload("step"))
        for old in self.run.kept_checkpoints()[: -self.keep]:
            old.unlink(missing_ok=True)

    def restore(self) -> None:
        """Load ``last.pt`` into the model, optimizer, schedule, scaler, window, counters and RNGs;
        metric lines written after it are dropped."""
        last = self.run.last
        state = load_checkpoint(last)
        check_fingerprint(state, self.fingerprint, last, self.run.path)
        load_model_state(self.model, state["model"], last)
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        load_scaler_state(self.scaler, state.get("scaler") or {})
        if "window" in state:  # checkpoints from before the window was saved start an empty one
            self.window.load_state_dict(state["window"])
        self.progress.update_from(state["progress"])
        set_rng_state(state["rng"])
        truncate_metrics(self.run.metrics, self.progress.step)
        log.info("resumed from %s at step %d (epoch %d)", last, self.progress.step, self.progress.epoch)


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint we resume from (and a line cut short)."""
    if not path.is_file():
        return
    kept = [record for record in read_metrics(path) if record.get("step", 0) <= step]
    write_text_atomic(path, "".join(json.dumps(record) + "\n" for record in kept))
