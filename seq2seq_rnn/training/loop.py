"""The training loop: steps over token-bucketed batches, validations, stop rules and signals.

The loop knows nothing of distributed runners; ``Hooks`` lets one (Ray Train) wrap the
model, shard the data and receive each validation's metrics and checkpoint, and
``callbacks`` (see ``training/callbacks.py``) act on its named events. Everything resume
needs (model, optimizer, schedule, progress, data position, RNG states) is in
``checkpoints/last.pt``, written atomically.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from seq2seq_rnn.cells.failure import plugin_error
from seq2seq_rnn.config import Recipe
from seq2seq_rnn.data.batching import Batch, TokenBatchSampler
from seq2seq_rnn.data.cache import cache_root
from seq2seq_rnn.errors import Seq2SeqError, TrainingInterrupted
from seq2seq_rnn.metrics import Scores
from seq2seq_rnn.run.directory import RunDir
from seq2seq_rnn.training.callbacks import Callback, MetricsFile, ProgressDisplay, Report, TensorBoard
from seq2seq_rnn.training.checkpoints import CheckpointManager
from seq2seq_rnn.training.setup import (
    Data,
    build_model,
    build_optimizer,
    close_log_file,
    prepare_data,
    prepare_process,
    prepare_run,
    seed_everything,
    train_batch,
)
from seq2seq_rnn.training.state import Hooks, LRSchedule, Progress, Window
from seq2seq_rnn.training.updater import Updater
from seq2seq_rnn.training.validator import Validator

log = logging.getLogger("seq2seq_rnn.train")


@dataclass
class Parts:
    """What :meth:`Trainer.prepare` builds for the loop."""

    device: torch.device
    data: Data
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    updater: Updater
    validator: Validator
    sampler: TokenBatchSampler
    checkpoints: CheckpointManager


def build_parts(
    recipe: Recipe, run: RunDir, hooks: Hooks, device: torch.device, data: Data, progress: Progress, window: Window
) -> Parts:
    """The model, optimizer, schedule, updater, validator, sampler and checkpoints for ``data``."""
    cfg = recipe.train
    model = build_model(recipe, data.tokenizer, device)
    optimizer = build_optimizer(model, cfg.optimizer)
    schedule = LRSchedule(optimizer, cfg.optimizer.lr, cfg.scheduler)
    updater = Updater(cfg, model, hooks.wrap_model(model), optimizer, schedule, hooks, device)
    rows = data.train_rows
    sampler = TokenBatchSampler(
        data.train.src_lengths[rows],
        data.train.tgt_lengths[rows],
        cfg.batch_tokens,
        seed=recipe.seed,
        num_replicas=hooks.world_size,
        rank=hooks.rank,
    )
    checkpoints = CheckpointManager(
        recipe, run, hooks.is_main, model, optimizer, schedule, updater.scaler, window, progress, data.tokenizer.files
    )
    validator = Validator(recipe, model, data, device, hooks)
    return Parts(device, data, model, optimizer, schedule, updater, validator, sampler, checkpoints)


class Trainer:
    """Trains ``recipe`` in ``run_dir``; :meth:`fit` returns the last validation metrics."""

    def __init__(
        self,
        recipe: Recipe,
        run_dir: Path,
        resume: bool = False,
        hooks: Hooks | None = None,
        cache_dir: Path | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.recipe = recipe
        self.run = RunDir(Path(run_dir))
        self.resume = resume
        self.hooks = hooks or Hooks()
        self.cache_dir = cache_root(cache_dir)  # the data cache, shared by runs (see data/cache.py)
        self.cfg = recipe.train
        self.progress = Progress()  # one object, shared by every part (a restore updates it in place)
        self.window = Window()  # loss and speed since the last log line; checkpointed
        self.extra_callbacks = list(callbacks)
        self.callbacks: list[Callback] = []  # the built-in ones, then ``callbacks``: set by prepare()
        self.parts: Parts | None = None
        self.stop_signal: int | None = None
        self._validating = False
        self._batch_shapes = "not yet collated"  # named when a plugin cell fails

    # -- set-up ----------------------------------------------------------
    def prepare(self) -> Parts:
        recipe, hooks = self.recipe, self.hooks
        device = prepare_process(recipe, hooks.device)
        prepare_run(recipe, self.run, self.resume, hooks.is_main, hooks.world_size)
        self.callbacks = [*self._builtin_callbacks(), *self.extra_callbacks]
        seed_everything(recipe)
        data = prepare_data(recipe, self.run, self.cache_dir, hooks.is_main)
        self.parts = build_parts(recipe, self.run, hooks, device, data, self.progress, self.window)
        model = self.parts.model
        if self.resume and self.run.has_training_state():
            self.parts.checkpoints.restore()
            if self.progress.finished and not self.should_stop():
                # A finished run resumed with a larger budget (e.g. train.max_steps) continues.
                self.progress.finished = False
        if hooks.world_size > 1:  # same initial weights (DDP broadcasts), different dropout per worker
            torch.manual_seed(recipe.seed + 1_000_003 * (hooks.rank + 1) + self.progress.step)
        n_params = sum(p.numel() for p in model.parameters())
        log.info("model: %s parameters on %s", f"{n_params:,}", device)
        return self.parts

    def _builtin_callbacks(self) -> list[Callback]:
        found: list[Callback] = []
        if self.hooks.is_main:
            found.append(MetricsFile(self.run.metrics))
            if self.cfg.tensorboard:
                found.append(TensorBoard(self.run.tensorboard))
        return [*found, ProgressDisplay(), Report()]

    def _prepared(self) -> Parts:
        if self.parts is None:
            raise RuntimeError("Trainer.prepare() has not run yet")
        return self.parts

    device = property(lambda self: self._prepared().device, doc="set by prepare()")
    data = property(lambda self: self._prepared().data, doc="set by prepare()")
    model = property(lambda self: self._prepared().model, doc="set by prepare()")
    optimizer = property(lambda self: self._prepared().optimizer, doc="set by prepare()")
    sampler = property(lambda self: self._prepared().sampler, doc="set by prepare()")

    # -- the loop --------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train until a stop condition; returns the last validation metrics."""
        with self._writer_lock():
            try:
                self.prepare()
                with _StopOnSignal(self):
                    try:
                        return self._loop()
                    except _ValidationStopped:
                        return {}  # leaving the block raises TrainingInterrupted
                    except Seq2SeqError:
                        raise
                    except Exception as exc:  # e.g. a plugin cell failing at run time
                        self._save_after_failure(exc)
                        raise
            finally:
                close_log_file(self.run.log)

    def _writer_lock(self) -> contextlib.AbstractContextManager[None]:
        """The run directory's writer lock for the life of training (rank 0 writes the run)."""
        if not self.hooks.is_main:
            return contextlib.nullcontext()
        self.run.claim(self.resume)
        return self.run.lock("train")

    def _emit(self, event: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, event)(self, *args)

    def _loop(self) -> dict[str, Any]:
        p, cfg, parts = self.progress, self.cfg, self._prepared()
        last: dict[str, Any] = {}
        self._emit("on_train_begin")
        if p.validation_due:  # stopped by a signal last time: same validations as an uninterrupted run
            last = self._validate_and_checkpoint()
        while not p.finished:
            batches = parts.sampler.plan(p.epoch)
            while p.batch_in_epoch < len(batches):
                self._emit("on_step_begin")
                started = time.perf_counter()
                batch = self.load_batch(batches.batch(p.batch_in_epoch))
                loss, ntok = parts.updater.step(batch, p, self._last_good_state)
                p.batch_in_epoch += 1
                p.step += 1
                p.train_seconds += time.perf_counter() - started
                self.window.add(loss, ntok, time.perf_counter() - started)
                self._emit("on_step_end", loss, ntok)
                if p.step % cfg.log_every == 0:
                    self._log_train()
                if cfg.validate_every and p.step % cfg.validate_every == 0:
                    last = self._validate_and_checkpoint()
                if self.should_stop():
                    break
            if p.batch_in_epoch >= len(batches):
                p.epoch, p.batch_in_epoch = p.epoch + 1, 0
                if not cfg.validate_every:
                    last = self._validate_and_checkpoint()
            if self.stop_signal is not None:
                parts.checkpoints.save_last()  # interrupted: checkpoint quickly, no validation
                break
            if self.should_stop():
                if last.get("step") != p.step:
                    last = self._validate_and_checkpoint()
                p.finished = True
                parts.checkpoints.save_last()
        self._emit("on_train_end")
        return last

    def should_stop(self) -> bool:
        """The stop rules: a signal, train.max_steps, max_epochs, max_minutes, early-stopping patience."""
        p, cfg = self.progress, self.cfg
        patience = cfg.early_stopping_patience
        return bool(
            self.stop_signal is not None
            or (cfg.max_steps and p.step >= cfg.max_steps)
            or p.epoch >= cfg.max_epochs
            or (cfg.max_minutes and p.train_seconds >= cfg.max_minutes * 60)
            or (patience and p.bad_validations >= patience)
        )

    def load_batch(self, index: np.ndarray) -> Batch:
        """The sampler's sentences ``index``, read from the memory-mapped ids, on the device."""
        batch = train_batch(self.data, index, self.device)
        self._batch_shapes = f"src (B, S) = {tuple(batch.src.shape)}, tgt_in (B, T) = {tuple(batch.tgt_in.shape)}"
        return batch

    def _last_good_state(self) -> str:
        if self.run.has_training_state():
            return f"The last good state is in {self.run.last}"
        return "No checkpoint was written before this"

    def _log_train(self) -> None:
        p, window = self.progress, self.window
        run = window
        if self.hooks.world_size > 1:  # every rank logs at the same steps: sum the windows over ranks
            summed = torch.tensor([window.loss_sum, window.tokens, window.seconds], dtype=torch.float64)
            loss_sum, tokens, seconds = self.hooks.all_reduce_sum(summed.to(self.device)).tolist()
            # tokens of all ranks over the ranks' mean time: the run's throughput
            run = Window(loss_sum, int(tokens), seconds / self.hooks.world_size)
        self._emit("on_log", train_log_metrics(p, run, self._prepared().schedule))
        window.reset()

    # -- validation and checkpoints --------------------------------------
    def _validate_and_checkpoint(self) -> dict[str, Any]:
        p, parts = self.progress, self._prepared()
        p.validation_due, self._validating = True, True
        try:
            val_loss, scores = parts.validator.shared_scores()
        except _ValidationStopped:
            self._validating = False
            parts.checkpoints.save_last()  # the weights of this step; resume validates first
            raise
        p.validation_due, self._validating = False, False
        metrics, improved = record_validation(p, parts.schedule, val_loss, scores)
        if improved:
            parts.checkpoints.save_best()
        parts.checkpoints.keep_step()
        self._emit("on_validation", metrics)  # before last.pt: a kill in between repeats the line, never loses it
        parts.checkpoints.save_last()
        self._emit("on_checkpoint", metrics)
        return metrics

    def _save_after_failure(self, exc: Exception) -> None:
        """Write the last good state (the failed step changed no weights), then name a failing plugin cell.

        A built-in component's failure is a bug of ours: its traceback is kept (the caller re-raises).
        """
        try:
            self._prepared().checkpoints.save_last()
            saved = f"The last good state (step {self.progress.step}) is in {self.run.last}"
        except Seq2SeqError as save_error:
            saved = f"No checkpoint could be written ({save_error})"
        advice = (
            f"batch: {self._batch_shapes}\n  {saved}; fix or replace the cell, "
            f"then continue with --resume --output-dir {self.run.path}"
        )
        error = plugin_error(exc, self.recipe.model, f"at step {self.progress.step + 1}", advice)
        if error is None:
            log.error("training failed at step %d; %s", self.progress.step + 1, saved)
            return
        raise error from exc

    def stop(self, signum: int) -> None:
        """Ask the loop to stop after the current step (signal handler); a validation stops at once."""
        self.stop_signal = signum
        if self._validating:
            self._validating = False
            raise _ValidationStopped


def record_validation(
    p: Progress, schedule: LRSchedule, val_loss: float, scores: Scores
) -> tuple[dict[str, Any], bool]:
    """Book a validation into the counters and the schedule; returns (its metrics row, improved).

    A non-finite validation is never recorded as best."""
    finite = math.isfinite(val_loss) and math.isfinite(scores.bleu)
    if not finite:
        log.warning("validation at step %d: non-finite loss (%s); never recorded as best", p.step, val_loss)
    improved = finite and scores.bleu > p.best_bleu
    if improved:
        p.best_bleu, p.best_step, p.bad_validations = scores.bleu, p.step, 0
    else:
        p.bad_validations += 1
    if schedule.observe(scores.bleu):
        log.info("validation BLEU plateaued: learning rate now %.2e", schedule.lr(p.step))
    metrics = {
        "step": p.step,
        "epoch": p.epoch,
        "val_loss": round(val_loss, 5),
        "val_bleu": round(scores.bleu, 2),
        "val_chrf": round(scores.chrf, 2),
        "lr": schedule.lr(p.step),
        "best_val_bleu": round(p.best_bleu, 2),
        "bleu_signature": scores.bleu_signature,
    }
    best = " (best)" if improved else ""
    log.info(
        "validation at step %d: loss %.3f, BLEU %.2f, chrF %.2f%s", p.step, val_loss, scores.bleu, scores.chrf, best
    )
    return metrics, improved


def train_log_metrics(p: Progress, window: Window, schedule: LRSchedule) -> dict[str, Any]:
    """The metrics row of a training log line (``window``: the run's, summed over ranks)."""
    return {
        "step": p.step,
        "epoch": p.epoch,
        "loss": round(window.loss(), 5),
        "lr": schedule.lr(p.step),
        "tokens_per_sec": round(window.rate(), 1),
        "nonfinite_steps": p.nonfinite_steps,
    }


class _ValidationStopped(Exception):
    """Raised by the signal handler inside a validation, which can take minutes."""


class _StopOnSignal:
    """SIGINT/SIGTERM during training: finish the step, checkpoint, then raise."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _StopOnSignal:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, lambda s, _f: self.trainer.stop(s))
        except ValueError:  # not the main thread (e.g. inside a Ray worker)
            self.previous = {}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        stopped = self.trainer.stop_signal
        if stopped is not None and exc[0] is None:
            name = signal.Signals(stopped).name
            raise TrainingInterrupted(
                f"stopped by {name} at step {self.trainer.progress.step}; checkpoint saved in "
                f"{self.trainer.run.last}. Resume with: seq2seq-rnn train RECIPE --resume "
                f"--output-dir {self.trainer.run.path}"
            )
