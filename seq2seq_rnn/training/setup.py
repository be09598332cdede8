"""Setting a run up, as free functions: the single-process trainer, the Ray driver and its
workers, and the tools call the same ones (no Trainer object is built just for its set-up).

``prepare_run`` claims and checks the run directory; ``prepare_data`` reads the splits, trains
the tokenizer (unless the run has one) and tokenizes through the data cache; ``build_model`` and
``build_optimizer`` make what the loop updates.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from seq2seq_rnn.config import OptimizerConfig, Recipe
from seq2seq_rnn.data.batching import Batch
from seq2seq_rnn.data.cache import cached, digest
from seq2seq_rnn.data.corpus import ParallelCorpus, SplitTable, load_split_table, rows_within
from seq2seq_rnn.data.tokenizer import SubwordTokenizer
from seq2seq_rnn.data.tokens import TokenizedSplit, tokenize_split
from seq2seq_rnn.errors import ConfigError
from seq2seq_rnn.inference.decoding import check_beam, resolve_device
from seq2seq_rnn.model import Seq2Seq
from seq2seq_rnn.registry import import_modules
from seq2seq_rnn.run.checkpoint import (
    check_writable,
    copy_atomic,
    open_no_follow,
    remove_stale_temporaries,
    write_text_atomic,
)
from seq2seq_rnn.run.directory import RunDir

log = logging.getLogger("seq2seq_rnn.train")


@dataclass
class Data:
    """Everything training reads: subword ids memory-mapped from the data cache, encoded once.

    ``train_rows``: the rows of ``train`` within ``data.max_length`` (the sampler's index i
    is row ``train_rows[i]``). ``validation`` is the validation split as text, for decoding;
    ``validation_ids`` the same split as subword ids, for the teacher-forced loss.
    """

    tokenizer: SubwordTokenizer
    train: TokenizedSplit
    train_rows: np.ndarray
    validation: ParallelCorpus
    validation_ids: TokenizedSplit


# ------------------------------------------------------------------ the process and the device
def prepare_process(recipe: Recipe, device: torch.device | None = None) -> torch.device:
    """Import the recipe's plugins, pick the device and refuse fp16 without CUDA.

    A Ray worker gets the recipe, not the driver's imports: hence the plugins here.
    """
    import_modules(recipe.plugins, "plugins")
    cfg = recipe.train
    device = device or resolve_device(cfg.device)
    if cfg.amp == "fp16" and device.type != "cuda":  # config refuses device cpu; this is 'auto'
        raise ConfigError(
            f"train.amp: 'fp16' needs a CUDA device (loss scaling), but train.device {cfg.device!r} "
            f"found {device.type}; use amp 'bf16' or 'none' there"
        )
    return device


def seed_everything(recipe: Recipe) -> None:
    if recipe.train.threads:
        torch.set_num_threads(recipe.train.threads)
    torch.manual_seed(recipe.seed)
    random.seed(recipe.seed)


# ------------------------------------------------------------------ the run directory
def prepare_run(recipe: Recipe, run: RunDir, resume: bool, is_main: bool = True, world_size: int = 1) -> None:
    """Refuse a clash with an existing run, then write recipe.yaml and open the log —
    before any data work, so an unwritable folder fails now, not at the first checkpoint."""
    if run.has_training_state() and not resume:
        raise ConfigError(
            f"{run.path} already holds a training run; pass --resume to continue it or choose another --output-dir"
        )
    if resume and run.recipe.is_file():
        check_resumable(recipe, run.load_recipe(), run.recipe)
    if not is_main:
        return
    run.claim(resume)  # a folder that is not a run of ours is refused before anything changes in it
    try:
        if run.has_training_state():
            run.end_start()  # a start record left by a kill right after the first last.pt
        else:
            # Refuses a run that lost last.pt but holds trained work; cleans an unfinished start of
            # the files it created (never a checkpoint), then records what this start begins with.
            run.begin_start()
        check_writable(run.checkpoints)
        remove_stale_temporaries(run.checkpoints)  # left by a kill mid-write
        remove_stale_temporaries(run.path)
        write_text_atomic(run.recipe, recipe.to_yaml())
        log_to_file(run.log)
    except OSError as exc:
        raise ConfigError(f"cannot write to the output directory {run.path}: {exc}") from None


def check_resumable(recipe: Recipe, saved: Recipe, saved_at: Path) -> None:
    for section in ("data", "tokenizer", "model"):
        if getattr(saved, section) != getattr(recipe, section):
            raise ConfigError(
                f"--resume: the recipe's {section} section differs from the one in {saved_at}; "
                "only train/decode/evaluate settings may change when resuming"
            )


def log_to_file(path: Path) -> None:
    root = logging.getLogger("seq2seq_rnn")
    if any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path.resolve() for h in root.handlers):
        return
    handler = NoFollowFileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)


class NoFollowFileHandler(logging.FileHandler):
    """A log file opened with ``O_NOFOLLOW``: a link put in its place is refused, never appended through."""

    def _open(self):  # type: ignore[no-untyped-def]
        return open_no_follow(Path(self.baseFilename), "a")


def close_log_file(path: Path) -> None:
    """Detach a run's log file, so later runs in this process do not write into it."""
    root = logging.getLogger("seq2seq_rnn")
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename) == path.resolve():
            root.removeHandler(handler)
            handler.close()


# ------------------------------------------------------------------ data
def prepare_data(recipe: Recipe, run: RunDir, cache_dir: Path, is_main: bool = True) -> Data:
    """Read the splits, train the tokenizer (unless the run has one) and tokenize, via the data cache.

    The seam for distributed runners: a driver calls it once so that its workers'
    calls only open cached files (no worker reads or tokenizes the corpus again).
    """
    data_cfg = recipe.data
    train = load_split_table(data_cfg, "train", cache_dir)
    validation = load_split_table(data_cfg, "validation", cache_dir)
    log.info("data: %d training pairs, %d validation pairs", len(train), len(validation))
    if run.tokenizer.is_dir() and any(run.tokenizer.glob("*.model")):
        tok = SubwordTokenizer.load(run.tokenizer)
    else:
        tok = train_tokenizer(recipe, train, run, cache_dir)
    train_ids = tokenize_split(train, tok, cache_dir)
    rows = rows_within(train_ids.src_lengths, train_ids.tgt_lengths, data_cfg.max_length)
    if len(rows) < len(train_ids):
        log.info(
            "data: dropped %d training pairs longer than %d subwords",
            len(train_ids) - len(rows),
            data_cfg.max_length,
        )
    if is_main:
        write_data_counts(recipe, run, len(train_ids), len(rows), len(validation))
    return Data(tok, train_ids, rows, validation.to_corpus(), tokenize_split(validation, tok, cache_dir))


def train_tokenizer(recipe: Recipe, train: SplitTable, run: RunDir, cache_dir: Path) -> SubwordTokenizer:
    """Train on a seeded sample of at most ``tokenizer.sample_sentences`` sentences per model.

    The model is kept in the data cache under (training split, tokenizer section, seed), so
    Tune trials and new runs with the same data and settings copy it instead of training again.
    """
    cfg = recipe.tokenizer
    pairs = max(cfg.sample_sentences // 2 if cfg.joint else cfg.sample_sentences, 1)
    rows = None
    if len(train) > pairs:
        rows = np.sort(np.random.default_rng(recipe.seed).choice(len(train), size=pairs, replace=False))

    def build(folder: Path) -> dict[str, Any]:
        if rows is not None:
            log.info("tokenizer: training on %d of %d training pairs (tokenizer.sample_sentences)", pairs, len(train))
        source, target = train.iter_column("source", rows), train.iter_column("target", rows)
        SubwordTokenizer.train(cfg, source, target, folder, recipe.seed)
        return {"files": sorted(f.name for f in folder.iterdir())}

    entry = cache_dir / "tokenizers" / digest("tokenizer", train.key, cfg.model_dump(), recipe.seed)
    meta, hit = cached(entry, build)
    if hit:
        log.info("tokenizer: the same data and settings trained one before; copied from %s", entry)
    run.tokenizer.mkdir(parents=True, exist_ok=True)
    for name in meta["files"]:
        copy_atomic(entry / name, run.tokenizer / name)  # replaces a link in the way, never writes through it
    return SubwordTokenizer.load(run.tokenizer)


def write_data_counts(recipe: Recipe, run: RunDir, train: int, kept: int, validation: int) -> None:
    """RUN_DIR/data.json: the counts the model card reports (read back, never parsed from the log)."""
    counts = {
        "train_pairs": train,
        "train_kept": kept,
        "train_dropped": train - kept,
        "max_length": recipe.data.max_length,
        "validation_pairs": validation,
    }
    write_text_atomic(run.data_counts, json.dumps(counts, indent=2) + "\n")


def to_device(batch: Batch, device: torch.device) -> Batch:
    """On CUDA through pinned memory, so the copy overlaps with the GPU's work."""
    if device.type == "cuda":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)


def train_batch(data: Data, index: np.ndarray, device: torch.device) -> Batch:
    """The sampler's sentences ``index`` (positions in ``data.train_rows``), read from the
    memory-mapped ids, on ``device``."""
    return to_device(data.train.batch(data.train_rows[index]), device)


# ------------------------------------------------------------------ what the loop updates
def build_model(recipe: Recipe, tokenizer: SubwordTokenizer, device: torch.device) -> Seq2Seq:
    """The model for ``tokenizer``'s vocabularies; beams wider than the target vocabulary are
    refused now, not at the first validation."""
    vocab = tokenizer.target_vocab_size
    check_beam(recipe.train.validation_beam_size, vocab, "train.validation_beam_size:")
    check_beam(recipe.decode.beam_size, vocab, "decode.beam_size:")
    return Seq2Seq.from_config(recipe.model, tokenizer.source_vocab_size, vocab).to(device)


def build_optimizer(model: nn.Module, opt: OptimizerConfig) -> torch.optim.Optimizer:
    params = model.parameters()
    if opt.name == "sgd":
        return torch.optim.SGD(params, lr=opt.lr, weight_decay=opt.weight_decay)
    cls = torch.optim.AdamW if opt.name == "adamw" else torch.optim.Adam
    return cls(params, lr=opt.lr, betas=tuple(opt.betas), weight_decay=opt.weight_decay)
