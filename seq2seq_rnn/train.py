"""Training: a plain PyTorch loop over token-bucketed batches.

The loop knows nothing of distributed runners; ``Hooks`` lets one (Ray Train)
wrap the model, shard the data and receive each validation's metrics and
checkpoint. Everything resume needs (model, optimizer, schedule, progress,
data position, RNG states) is in ``checkpoints/last.pt``, written atomically.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seq2seq_rnn.cells.failure import failed_cell
from seq2seq_rnn.checkpoint import (
    check_fingerprint,
    check_writable,
    fingerprint,
    load_checkpoint,
    load_model_state,
    remove_stale_temporaries,
    save_checkpoint,
    write_text_atomic,
)
from seq2seq_rnn.config import Recipe, SchedulerConfig
from seq2seq_rnn.data.batching import Batch, TokenBatchSampler, sentence_batches
from seq2seq_rnn.data.cache import cache_root, cached, digest
from seq2seq_rnn.data.corpus import ParallelCorpus, SplitTable, load_split_table
from seq2seq_rnn.data.tokenizer import PAD_ID, SubwordTokenizer
from seq2seq_rnn.data.tokens import TokenizedSplit, tokenize_split
from seq2seq_rnn.decoding import resolve_device, settings, translate_corpus
from seq2seq_rnn.errors import ConfigError, PluginError, Seq2SeqError, TrainingError, TrainingInterrupted
from seq2seq_rnn.metrics import Scores, score
from seq2seq_rnn.model import Seq2Seq
from seq2seq_rnn.nn.loss import smoothed_cross_entropy
from seq2seq_rnn.precision import autocast_dtype, resolve_precision
from seq2seq_rnn.precision import why as why_precision
from seq2seq_rnn.progress import on_terminal
from seq2seq_rnn.registry import import_modules
from seq2seq_rnn.rundir import RunDir, read_metrics

log = logging.getLogger("seq2seq_rnn.train")


# ------------------------------------------------------------------ pieces
@dataclass
class Progress:
    """Counters restored on resume (besides the tensors)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_bleu: float = -1.0
    best_step: int = 0
    bad_validations: int = 0
    nonfinite_steps: int = 0
    train_seconds: float = 0.0
    finished: bool = False
    validation_due: bool = False  # a validation was stopped by a signal: resume runs it first


class LRSchedule:
    """Linear warm-up to the base rate, then ×factor when validation BLEU plateaus."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, cfg: SchedulerConfig) -> None:
        self.optimizer, self.base_lr, self.cfg = optimizer, base_lr, cfg
        self.scale, self.best, self.bad = 1.0, -math.inf, 0

    def lr(self, step: int) -> float:
        warm = min(1.0, (step + 1) / self.cfg.warmup_steps) if self.cfg.warmup_steps else 1.0
        return max(self.base_lr * self.scale, self.cfg.min_lr) * warm

    def apply(self, step: int) -> float:
        lr = self.lr(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def observe(self, metric: float) -> bool:
        """Record a validation score; returns True when the rate was decayed."""
        if metric > self.best:
            self.best, self.bad = metric, 0
            return False
        self.bad += 1
        if self.bad <= self.cfg.plateau_patience:
            return False
        self.scale *= self.cfg.plateau_factor
        self.bad = 0
        return True

    def state_dict(self) -> dict[str, float]:
        return {"scale": self.scale, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.scale, self.best, self.bad = state["scale"], state["best"], int(state["bad"])


def _identity(x: Any) -> Any:
    return x


@dataclass
class Hooks:
    """What a distributed runner plugs into the loop (defaults: one process)."""

    rank: int = 0
    world_size: int = 1
    wrap_model: Callable[[nn.Module], nn.Module] = _identity
    all_reduce_sum: Callable[[Tensor], Tensor] = _identity
    report: Callable[[dict[str, Any], Path | None], None] | None = None
    device: torch.device | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def token_loss(logits: Tensor, target: Tensor, label_smoothing: float) -> tuple[Tensor, Tensor]:
    """logits (B, T, V), target (B, T) → summed loss over non-pad tokens, token count."""
    # bf16 (issue 22): fused, in fp32 blocks, = F.cross_entropy(logits.float(), …, reduction="sum")
    loss = smoothed_cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), label_smoothing, PAD_ID)
    return loss, (target != PAD_ID).sum()


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Data:
    """Everything training reads: subword ids memory-mapped from the data cache, encoded once.

    ``train_rows``: the rows of ``train`` within ``data.max_length`` (the sampler's index i
    is row ``train_rows[i]``). ``validation`` is small and held as text for decoding.
    """

    tokenizer: SubwordTokenizer
    train: TokenizedSplit
    train_rows: np.ndarray
    validation: ParallelCorpus
    val: TokenizedSplit


# ------------------------------------------------------------------ trainer
class Trainer:
    """Trains ``recipe`` in ``run_dir``; :meth:`fit` returns the last validation metrics."""

    def __init__(
        self,
        recipe: Recipe,
        run_dir: Path,
        resume: bool = False,
        hooks: Hooks | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.recipe = recipe
        self.run = RunDir(Path(run_dir))
        self.resume = resume
        self.hooks = hooks or Hooks()
        self.cache_dir = cache_root(cache_dir)  # the data cache, shared by runs (see data/cache.py)
        self.cfg = recipe.train
        self.progress = Progress()
        self._stop_signal: int | None = None
        self._validating = False
        self._tensorboard: Any = None  # a SummaryWriter when train.tensorboard is on
        self.window = _Window()  # loss and speed since the last log line; checkpointed, so a resume logs it whole

    # -- set-up ----------------------------------------------------------
    def prepare(self) -> None:
        import_modules(self.recipe.plugins, "plugins")  # a Ray worker gets the recipe, not the driver's imports
        self.device = self.hooks.device or resolve_device(self.cfg.device)
        if self.cfg.amp == "fp16" and self.device.type != "cuda":  # config refuses device cpu; this is 'auto'
            raise ConfigError(
                f"train.amp: 'fp16' needs a CUDA device (loss scaling), but train.device {self.cfg.device!r} "
                f"found {self.device.type}; use amp 'bf16' or 'none' there"
            )
        self.precision = resolve_precision(self.cfg.amp, self.device)  # bf16 (issue 22): 'auto' → fast bf16 or fp32
        self.prepare_run_dir()
        log.info("precision: %s (%s)", self.precision, why_precision(self.cfg.amp, self.device, self.precision))
        if self.cfg.tensorboard and self.hooks.is_main:
            self._tensorboard = _tensorboard_writer(self.run.path / "tensorboard")
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        torch.manual_seed(self.recipe.seed)
        random.seed(self.recipe.seed)
        self.data = self.prepare_data()
        tok = self.data.tokenizer
        self._check_beams(tok.target_vocab_size)
        self.model = Seq2Seq.from_config(self.recipe.model, tok.source_vocab_size, tok.target_vocab_size).to(
            self.device
        )
        self.train_model = self.hooks.wrap_model(self.model)
        self.optimizer = self._build_optimizer()
        self.schedule = LRSchedule(self.optimizer, self.cfg.optimizer.lr, self.cfg.scheduler)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.cfg.amp == "fp16" and self.device.type == "cuda")
        rows = self.data.train_rows
        self.sampler = TokenBatchSampler(
            self.data.train.src_lengths[rows],
            self.data.train.tgt_lengths[rows],
            self.cfg.batch_tokens,
            seed=self.recipe.seed,
            num_replicas=self.hooks.world_size,
            rank=self.hooks.rank,
        )
        if self.resume and self.run.has_training_state():
            self._restore()
        if self.hooks.world_size > 1:  # same initial weights (DDP broadcasts), different dropout per worker
            torch.manual_seed(self.recipe.seed + 1_000_003 * (self.hooks.rank + 1) + self.progress.step)
        n_params = sum(p.numel() for p in self.model.parameters())
        log.info("model: %s parameters on %s", f"{n_params:,}", self.device)

    def prepare_run_dir(self) -> None:
        """Refuse a clash with an existing run, then write recipe.yaml and open the log —
        before any data work, so an unwritable folder fails now, not at the first checkpoint."""
        run = self.run
        if run.has_training_state() and not self.resume:
            raise ConfigError(
                f"{run.path} already holds a training run; pass --resume to continue it or choose another --output-dir"
            )
        if self.resume and run.recipe.is_file():
            self._check_resumable(run.load_recipe())
        if not self.hooks.is_main:
            return
        run.claim(self.resume)  # a folder that is not a run of ours is refused before anything changes in it
        try:
            check_writable(run.checkpoints)
            remove_stale_temporaries(run.checkpoints)  # left by a kill mid-write
            remove_stale_temporaries(run.path)
            write_text_atomic(run.recipe, self.recipe.to_yaml())
            _log_to_file(run.log)
        except OSError as exc:
            raise ConfigError(f"cannot write to the output directory {run.path}: {exc}") from None
        if not run.has_training_state() and run.metrics.is_file():
            log.info("%s: a start that never reached a checkpoint; training starts from the beginning", run.path)
        run.clean_unfinished_start()  # its metrics.jsonl rows would be written again
        if not run.has_training_state() and run.tokenizer.is_dir() and self.hooks.world_size == 1:
            # Left by a start that never reached a checkpoint: maybe half-written or for another recipe.
            log.info("removing the tokenizer of an unfinished start in %s; it is trained again", run.tokenizer)
            shutil.rmtree(run.tokenizer)

    def _check_beams(self, vocab: int) -> None:
        """Beams wider than the vocabulary the tokenizer produced: refuse now, not at the first validation."""
        for key, beam in (
            ("train.validation_beam_size", self.cfg.validation_beam_size),
            ("decode.beam_size", self.recipe.decode.beam_size),
        ):
            if beam > vocab:
                raise ConfigError(f"{key}: {beam} is larger than the target vocabulary ({vocab} subwords); lower it")

    def _check_resumable(self, saved: Recipe) -> None:
        for section in ("data", "tokenizer", "model"):
            if getattr(saved, section) != getattr(self.recipe, section):
                raise ConfigError(
                    f"--resume: the recipe's {section} section differs from the one in {self.run.recipe}; "
                    "only train/decode/evaluate settings may change when resuming"
                )

    def prepare_data(self) -> Data:
        """Read the splits, train the tokenizer (unless the run has one) and tokenize, via the data cache.

        The seam for distributed runners: a driver calls it once so that its workers'
        calls only open cached files (no worker reads or tokenizes the corpus again).
        """
        data_cfg = self.recipe.data
        train = load_split_table(data_cfg, "train", self.cache_dir)
        validation = load_split_table(data_cfg, "validation", self.cache_dir)
        log.info("data: %d training pairs, %d validation pairs", len(train), len(validation))
        if self.run.tokenizer.is_dir() and any(self.run.tokenizer.glob("*.model")):
            tok = SubwordTokenizer.load(self.run.tokenizer)
        else:
            tok = self._train_tokenizer(train)
        train_ids = tokenize_split(train, tok, self.cache_dir)
        within = (train_ids.src_lengths <= data_cfg.max_length) & (train_ids.tgt_lengths <= data_cfg.max_length)
        rows = np.flatnonzero(within)
        if len(rows) < len(train_ids):
            log.info(
                "data: dropped %d training pairs longer than %d subwords",
                len(train_ids) - len(rows),
                data_cfg.max_length,
            )
        self._write_data_counts(len(train_ids), len(rows), len(train_ids) - len(rows), len(validation))
        return Data(tok, train_ids, rows, validation.to_corpus(), tokenize_split(validation, tok, self.cache_dir))

    def _train_tokenizer(self, train: SplitTable) -> SubwordTokenizer:
        """Train on a seeded sample of at most ``tokenizer.sample_sentences`` sentences per model.

        The model is kept in the data cache under (training split, tokenizer section, seed), so
        Tune trials and new runs with the same data and settings copy it instead of training again.
        """
        cfg = self.recipe.tokenizer
        pairs = max(cfg.sample_sentences // 2 if cfg.joint else cfg.sample_sentences, 1)
        rows = None
        if len(train) > pairs:
            rows = np.sort(np.random.default_rng(self.recipe.seed).choice(len(train), size=pairs, replace=False))

        def build(folder: Path) -> dict[str, Any]:
            if rows is not None:
                log.info(
                    "tokenizer: training on %d of %d training pairs (tokenizer.sample_sentences)", pairs, len(train)
                )
            source, target = train.iter_column("source", rows), train.iter_column("target", rows)
            SubwordTokenizer.train(cfg, source, target, folder, self.recipe.seed)
            return {"files": sorted(f.name for f in folder.iterdir())}

        entry = self.cache_dir / "tokenizers" / digest("tokenizer", train.key, cfg.model_dump(), self.recipe.seed)
        meta, hit = cached(entry, build)
        if hit:
            log.info("tokenizer: the same data and settings trained one before; copied from %s", entry)
        self.run.tokenizer.mkdir(parents=True, exist_ok=True)
        for name in meta["files"]:
            shutil.copyfile(entry / name, self.run.tokenizer / name)
        return SubwordTokenizer.load(self.run.tokenizer)

    def _write_data_counts(self, train: int, kept: int, dropped: int, validation: int) -> None:
        """RUN_DIR/data.json: the counts the model card reports (read back, never parsed from the log)."""
        if not self.hooks.is_main:
            return
        counts = {
            "train_pairs": train,
            "train_kept": kept,
            "train_dropped": dropped,
            "max_length": self.recipe.data.max_length,
            "validation_pairs": validation,
        }
        write_text_atomic(self.run.data_counts, json.dumps(counts, indent=2) + "\n")

    def _build_optimizer(self) -> torch.optim.Optimizer:
        opt = self.cfg.optimizer
        params = self.model.parameters()
        if opt.name == "sgd":
            return torch.optim.SGD(params, lr=opt.lr, weight_decay=opt.weight_decay)
        cls = torch.optim.AdamW if opt.name == "adamw" else torch.optim.Adam
        return cls(params, lr=opt.lr, betas=tuple(opt.betas), weight_decay=opt.weight_decay)

    def _restore(self) -> None:
        state = load_checkpoint(self.run.last)
        check_fingerprint(state, self._fingerprint(), self.run.last, self.run.path)
        load_model_state(self.model, state["model"], self.run.last)
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        load_scaler_state(self.scaler, state.get("scaler") or {})
        if "window" in state:  # checkpoints from before the window was saved start an empty one
            self.window.load_state_dict(state["window"])
        self.progress = Progress(**state["progress"])
        if self.progress.finished and not self._should_stop():
            # A finished run resumed with a larger budget (e.g. train.max_steps) continues.
            self.progress.finished = False
        set_rng_state(state["rng"])
        _truncate_metrics(self.run.metrics, self.progress.step)
        log.info("resumed from %s at step %d (epoch %d)", self.run.last, self.progress.step, self.progress.epoch)

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
                _close_log_file(self.run.log)

    def _writer_lock(self) -> contextlib.AbstractContextManager[None]:
        """The run directory's writer lock for the life of training (rank 0 writes the run)."""
        if not self.hooks.is_main:
            return contextlib.nullcontext()
        self.run.claim(self.resume)
        return self.run.lock("train")

    def _loop(self) -> dict[str, Any]:
        p, cfg = self.progress, self.cfg
        last: dict[str, Any] = {}
        if p.validation_due:  # stopped by a signal last time: same validations as an uninterrupted run
            last = self._validate_and_checkpoint()
        window = self.window
        bar = _progress_bar(cfg.max_steps or None, p.step, self.hooks.is_main)
        while not p.finished:
            batches = self.sampler.plan(p.epoch)
            while p.batch_in_epoch < len(batches):
                started = time.perf_counter()
                loss, ntok = self._train_step(self._load_batch(batches.batch(p.batch_in_epoch)))
                p.batch_in_epoch += 1
                p.step += 1
                p.train_seconds += time.perf_counter() - started
                window.add(loss, ntok, time.perf_counter() - started)
                bar.update(loss / max(ntok, 1), window.rate())
                if p.step % cfg.log_every == 0:
                    self._log_train(window)
                if cfg.validate_every and p.step % cfg.validate_every == 0:
                    last = self._validate_and_checkpoint()
                if self._should_stop():
                    break
            if p.batch_in_epoch >= len(batches):
                p.epoch, p.batch_in_epoch = p.epoch + 1, 0
                if not cfg.validate_every:
                    last = self._validate_and_checkpoint()
            if self._stop_signal is not None:
                self._save_last()  # interrupted: checkpoint quickly, no validation
                break
            if self._should_stop():
                if last.get("step") != p.step:
                    last = self._validate_and_checkpoint()
                p.finished = True
                self._save_last()
        bar.close()
        return last

    def _load_batch(self, index: np.ndarray) -> Batch:
        """The sampler's sentences ``index``, read from the memory-mapped ids, on the device."""
        batch = _to_device(self.data.train.batch(self.data.train_rows[index]), self.device)
        self._batch_shapes = f"src (B, S) = {tuple(batch.src.shape)}, tgt_in (B, T) = {tuple(batch.tgt_in.shape)}"
        return batch

    def _save_after_failure(self, exc: Exception) -> None:
        """Write the last good state (the failed step changed no weights), then name a failing plugin cell.

        A built-in component's failure is a bug of ours: its traceback is kept (the caller re-raises).
        """
        try:
            self._save_last()
            saved = f"The last good state (step {self.progress.step}) is in {self.run.last}"
        except Seq2SeqError as save_error:
            saved = f"No checkpoint could be written ({save_error})"
        found = failed_cell(exc, self.recipe.model)
        if found is None or not found.is_plugin:
            log.error("training failed at step %d; %s", self.progress.step + 1, saved)
            return
        raise PluginError(
            f"{found.describe(f'at step {self.progress.step + 1}', exc)}\n  "
            f"batch: {getattr(self, '_batch_shapes', 'not yet collated')}\n  {saved}; fix or replace the cell, "
            f"then continue with --resume --output-dir {self.run.path}"
        ) from exc

    def _train_step(self, batch: Batch) -> tuple[float, int]:
        """One update; returns (summed loss, target tokens). Non-finite steps are skipped."""
        self.train_model.train()
        lr = self.schedule.apply(self.progress.step)
        keep = batch.tgt_out != PAD_ID  # bf16 (issue 22): logits only where a target token is scored
        with self._autocast():
            logits = self.train_model(batch.src, batch.src_lengths, batch.tgt_in, keep)
        loss_sum, ntok = token_loss(logits, batch.tgt_out[keep], self.cfg.label_smoothing)
        total = self.hooks.all_reduce_sum(ntok.detach().float().clone())
        # Gradients are averaged over all workers' tokens: scale by world/total.
        self.scaler.scale(loss_sum * (self.hooks.world_size / total.clamp(min=1))).backward()
        self.scaler.unscale_(self.optimizer)
        norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_norm or float("inf"))
        if not torch.isfinite(loss_sum) or (not torch.isfinite(norm) and not self.scaler.is_enabled()):
            self._skip_nonfinite(lr)
            return 0.0, 0
        # With fp16 loss scaling, overflowing gradients are routine: scaler.step skips them.
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss_sum.detach()), int(ntok)

    def _skip_nonfinite(self, lr: float) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.update()
        p = self.progress
        p.nonfinite_steps += 1
        log.warning("step %d: non-finite loss or gradient, update skipped (%d so far)", p.step + 1, p.nonfinite_steps)
        if p.nonfinite_steps > self.cfg.max_nonfinite_steps:
            saved = (
                f"The last good state is in {self.run.last}"
                if self.run.has_training_state()
                else "No checkpoint was written before this"
            )
            raise TrainingError(
                f"{p.nonfinite_steps} steps had non-finite loss or gradients (limit train.max_nonfinite_steps="
                f"{self.cfg.max_nonfinite_steps}); lower train.optimizer.lr or check the data. {saved}."
            )

    def _autocast(self) -> Any:
        dtype = autocast_dtype(self.precision)  # bf16 (issue 22): the resolved precision, 'auto' included
        return torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def _should_stop(self) -> bool:
        p, cfg = self.progress, self.cfg
        patience = cfg.early_stopping_patience
        return bool(
            self._stop_signal is not None
            or (cfg.max_steps and p.step >= cfg.max_steps)
            or p.epoch >= cfg.max_epochs
            or (cfg.max_minutes and p.train_seconds >= cfg.max_minutes * 60)
            or (patience and p.bad_validations >= patience)
        )

    # -- validation and checkpoints --------------------------------------
    def validation_scores(self, beam_size: int | None = None) -> tuple[float, Scores]:
        """(teacher-forced loss per token, BLEU/chrF of decoded output) on the validation split."""
        self.model.eval()
        d = self.data
        loss, tokens = 0.0, 0
        with torch.no_grad(), self._autocast():
            for index in sentence_batches(d.val.src_lengths.tolist(), self.cfg.validation_batch_size):  # little padding
                batch = _to_device(d.val.batch(index), self.device)
                logits = self.model(batch.src, batch.src_lengths, batch.tgt_in)
                l_sum, n = token_loss(logits, batch.tgt_out, 0.0)
                loss, tokens = loss + float(l_sum), tokens + int(n)
        decode = settings(self.recipe.decode, beam_size=beam_size or self.cfg.validation_beam_size)
        hyps = translate_corpus(
            self.model, d.tokenizer, d.validation.sources, decode, self.device, self.recipe.max_source_length
        )
        ev = self.recipe.evaluate
        return loss / max(tokens, 1), score(hyps, d.validation.targets, ev.tokenize, ev.lowercase)

    def _shared_validation(self) -> tuple[float, Scores]:
        """:meth:`validation_scores` computed once, on rank 0, and shared with every rank.

        The other ranks wait in the all-reduce (rank 0's values plus their zeros) and so
        take the same best-checkpoint, learning-rate and early-stopping decisions.
        """
        if self.hooks.world_size == 1:
            return self.validation_scores()
        values = [0.0] * 4
        if self.hooks.is_main:
            val_loss, scores = self.validation_scores()
            values = [val_loss, scores.bleu, scores.chrf, scores.n]
        shared = self.hooks.all_reduce_sum(torch.tensor(values, dtype=torch.float64, device=self.device)).cpu()
        if self.hooks.is_main:
            return val_loss, scores
        loss, bleu, chrf, n = shared.tolist()
        return loss, Scores(bleu=bleu, chrf=chrf, bleu_signature="", chrf_signature="", n=int(n))

    def _validate_and_checkpoint(self) -> dict[str, Any]:
        p = self.progress
        p.validation_due, self._validating = True, True
        try:
            val_loss, scores = self._shared_validation()
        except _ValidationStopped:
            self._validating = False
            self._save_last()  # the weights of this step; resume validates first
            raise
        p.validation_due, self._validating = False, False
        finite = math.isfinite(val_loss) and math.isfinite(scores.bleu)
        if not finite:
            log.warning("validation at step %d: non-finite loss (%s); never recorded as best", p.step, val_loss)
        improved = finite and scores.bleu > p.best_bleu
        if improved:
            p.best_bleu, p.best_step, p.bad_validations = scores.bleu, p.step, 0
        else:
            p.bad_validations += 1
        if self.schedule.observe(scores.bleu):
            log.info("validation BLEU plateaued: learning rate now %.2e", self.schedule.lr(p.step))
        metrics = {
            "step": p.step,
            "epoch": p.epoch,
            "val_loss": round(val_loss, 5),
            "val_bleu": round(scores.bleu, 2),
            "val_chrf": round(scores.chrf, 2),
            "lr": self.schedule.lr(p.step),
            "best_val_bleu": round(p.best_bleu, 2),
            "bleu_signature": scores.bleu_signature,
        }
        log.info(
            "validation at step %d: loss %.3f, BLEU %.2f, chrF %.2f%s",
            p.step,
            val_loss,
            scores.bleu,
            scores.chrf,
            " (best)" if improved else "",
        )
        if improved and self.hooks.is_main:
            weights = {"model": self.model.state_dict(), "progress": asdict(p), "fingerprint": self._fingerprint()}
            save_checkpoint(self.run.best, weights)
        self._keep_step_checkpoint()
        self._append_metrics(metrics)  # before last.pt: a kill in between repeats the line, never loses it
        self._save_last()
        if self.hooks.report is not None:
            self.hooks.report(metrics, self.run.checkpoints if self.hooks.is_main else None)
        return metrics

    def _fingerprint(self) -> dict[str, str]:
        return fingerprint(self.data.tokenizer.files, self.recipe.model)

    def _keep_step_checkpoint(self) -> None:
        """Weights of this validation for averaging; only the newest ``keep_checkpoints`` stay."""
        keep = self.cfg.keep_checkpoints
        if not keep or not self.hooks.is_main:
            return
        weights = {"model": self.model.state_dict(), "fingerprint": self._fingerprint()}
        save_checkpoint(self.run.step_checkpoint(self.progress.step), weights)
        for old in self.run.kept_checkpoints()[:-keep]:
            old.unlink(missing_ok=True)

    def _save_last(self) -> None:
        if not self.hooks.is_main:
            return
        save_checkpoint(
            self.run.last,
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict(),
                "window": self.window.state_dict(),
                "progress": asdict(self.progress),
                "rng": rng_state(),
                "fingerprint": self._fingerprint(),
            },
        )

    def _append_metrics(self, metrics: dict[str, Any]) -> None:
        if self.hooks.is_main:
            with self.run.metrics.open("a", encoding="utf-8") as f:
                f.write(json.dumps(metrics) + "\n")
        if self._tensorboard is not None:
            for key, value in metrics.items():
                if key != "step" and isinstance(value, int | float):
                    self._tensorboard.add_scalar(key, value, metrics["step"])
            self._tensorboard.flush()

    def _log_train(self, window: _Window) -> None:
        p = self.progress
        run = window
        if self.hooks.world_size > 1:  # every rank logs at the same steps: sum the windows over ranks
            summed = torch.tensor([window.loss_sum, window.tokens, window.seconds], dtype=torch.float64)
            loss_sum, tokens, seconds = self.hooks.all_reduce_sum(summed.to(self.device)).tolist()
            # tokens of all ranks over the ranks' mean time: the run's throughput
            run = _Window(loss_sum, int(tokens), seconds / self.hooks.world_size)
        metrics = {
            "step": p.step,
            "epoch": p.epoch,
            "loss": round(run.loss(), 5),
            "lr": self.schedule.lr(p.step),
            "tokens_per_sec": round(run.rate(), 1),
            "nonfinite_steps": p.nonfinite_steps,
            "precision": self.precision,  # bf16 (issue 22): what the steps computed in
        }
        self._append_metrics(metrics)
        if not on_terminal():
            log.info(
                "step %d epoch %d: loss %.3f, %.0f tok/s, lr %.2e",
                p.step,
                p.epoch,
                metrics["loss"],
                metrics["tokens_per_sec"],
                metrics["lr"],
            )
        window.reset()

    def stop(self, signum: int) -> None:
        """Ask the loop to stop after the current step (signal handler); a validation stops at once."""
        self._stop_signal = signum
        if self._validating:
            self._validating = False
            raise _ValidationStopped


class _ValidationStopped(Exception):
    """Raised by the signal handler inside a validation, which can take minutes."""


# ------------------------------------------------------------------ utilities
def _to_device(batch: Batch, device: torch.device) -> Batch:
    """On CUDA through pinned memory, so the copy overlaps with the GPU's work."""
    if device.type == "cuda":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)


class _Window:
    """Loss and speed since the last log line."""

    def __init__(self, loss_sum: float = 0.0, tokens: int = 0, seconds: float = 0.0) -> None:
        self.loss_sum, self.tokens, self.seconds = loss_sum, tokens, seconds

    def reset(self) -> None:
        self.loss_sum, self.tokens, self.seconds = 0.0, 0, 0.0

    def add(self, loss: float, tokens: int, seconds: float) -> None:
        self.loss_sum += loss
        self.tokens += tokens
        self.seconds += seconds

    def loss(self) -> float:
        return self.loss_sum / max(self.tokens, 1)

    def rate(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def state_dict(self) -> dict[str, float]:
        return {"loss_sum": self.loss_sum, "tokens": self.tokens, "seconds": self.seconds}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.loss_sum, self.tokens, self.seconds = (
            float(state["loss_sum"]),
            int(state["tokens"]),
            float(state["seconds"]),
        )


def load_scaler_state(scaler: torch.amp.GradScaler, state: dict[str, Any]) -> None:
    """Restore fp16 loss scaling. A run started with amp 'none' saved an empty state (a disabled
    scaler's), which GradScaler.load_state_dict refuses: scaling then starts afresh."""
    if not scaler.is_enabled():
        return
    if not state:
        log.info("the checkpoint has no loss-scaling state (trained without amp 'fp16'); it starts afresh")
        return
    scaler.load_state_dict(state)


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
        stopped = self.trainer._stop_signal
        if stopped is not None and exc[0] is None:
            name = signal.Signals(stopped).name
            raise TrainingInterrupted(
                f"stopped by {name} at step {self.trainer.progress.step}; checkpoint saved in "
                f"{self.trainer.run.last}. Resume with: seq2seq-rnn train RECIPE --resume "
                f"--output-dir {self.trainer.run.path}"
            )


class _NullBar:
    def update(self, loss: float, rate: float) -> None: ...

    def close(self) -> None: ...


class _Bar:
    def __init__(self, total: int | None, initial: int) -> None:
        from tqdm.auto import tqdm

        self.tqdm = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr)

    def update(self, loss: float, rate: float) -> None:
        self.tqdm.set_postfix(loss=f"{loss:.3f}", tok_s=f"{rate:.0f}", refresh=False)
        self.tqdm.update(1)

    def close(self) -> None:
        self.tqdm.close()


def _progress_bar(total: int | None, initial: int, main: bool) -> _Bar | _NullBar:
    return _Bar(total, initial) if main and on_terminal() else _NullBar()


def _tensorboard_writer(folder: Path) -> Any:
    """A TensorBoard SummaryWriter (imported only when train.tensorboard is on)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "train.tensorboard: true needs the tensorboard package: pip install 'seq2seq_rnn[tensorboard]' "
            "(or pip install tensorboard), or set train.tensorboard: false"
        ) from None
    return SummaryWriter(log_dir=str(folder))


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint we resume from (and a line cut short)."""
    if not path.is_file():
        return
    kept = [record for record in read_metrics(path) if record.get("step", 0) <= step]
    path.write_text("".join(json.dumps(record) + "\n" for record in kept), encoding="utf-8")


def _log_to_file(path: Path) -> None:
    root = logging.getLogger("seq2seq_rnn")
    if any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path.resolve() for h in root.handlers):
        return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)


def _close_log_file(path: Path) -> None:
    """Detach a run's log file, so later runs in this process do not write into it."""
    root = logging.getLogger("seq2seq_rnn")
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename) == path.resolve():
            root.removeHandler(handler)
            handler.close()
