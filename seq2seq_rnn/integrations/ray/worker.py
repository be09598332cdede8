"""What runs inside a Ray worker: the ordinary Trainer, plus run-directory snapshots.

Every worker trains in its own scratch run directory on its node. A checkpoint
reported to Ray is a *snapshot of a whole run directory* (recipe.yaml,
tokenizer/, checkpoints/last.pt + best.pt, metrics.jsonl, data.json, train.log), so the
latest checkpoint in Ray's storage is itself a run directory that
``seq2seq-rnn translate/evaluate`` can read, and restoring it is a copy.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch
import torch.distributed as dist

from seq2seq_rnn.config import validate_recipe
from seq2seq_rnn.registry import import_target
from seq2seq_rnn.run.checkpoint import copy_atomic
from seq2seq_rnn.run.directory import RunDir
from seq2seq_rnn.training import Hooks, Trainer

log = logging.getLogger("seq2seq_rnn.integrations.ray")


# ------------------------------------------------------------ run-dir files
def pack_run_dir(run_dir: Path, with_state: bool) -> dict[str, bytes]:
    """recipe.yaml and tokenizer/ (and, ``with_state``, the training state) as {relative path: bytes}."""
    files = RunDir(run_dir).snapshot_files(with_state)
    return {str(f.relative_to(run_dir)): f.read_bytes() for f in files}


def unpack_run_dir(files: dict[str, bytes], run_dir: Path) -> None:
    for name, content in files.items():
        path = run_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def snapshot_run_dir(run_dir: Path, dest: Path) -> None:
    """Hard-link (else copy) the files a run directory needs into ``dest``.

    Checkpoints are replaced by rename, never rewritten in place, so a link
    keeps the version it was taken from.
    """
    for src in RunDir(run_dir).snapshot_files():
        target = dest / src.relative_to(run_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, target)
        except OSError:
            shutil.copy2(src, target)


def restore_run_dir(snapshot: Path, run_dir: Path) -> None:
    """Copy a snapshot over ``run_dir`` (files the snapshot lacks are left alone)."""
    for src in snapshot.rglob("*"):
        if src.is_file():
            copy_atomic(src, run_dir / src.relative_to(snapshot))  # replaces a link in the way, never follows it
    if RunDir(run_dir).has_training_state():
        RunDir(run_dir).end_start()  # the run reached a checkpoint: its files are trained work from now on


# ------------------------------------------------------------ sessions
@dataclass
class Session:
    """How a worker talks to Ray: Train (a rank of a worker group) or Tune (one trial process)."""

    rank: int
    world_size: int
    get_checkpoint: Callable[[], Any]
    report: Callable[[dict[str, Any], Path | None], None]
    hooks: Callable[[], dict[str, Any]]


def train_session() -> Session:
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()

    def report(metrics: dict[str, Any], snapshot: Path | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(str(snapshot)) if snapshot else None
        name = f"step_{int(metrics['step']):09d}{'_final' if metrics.get('final') else ''}"
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)

    def hooks() -> dict[str, Any]:
        return {
            "wrap_model": ray.train.torch.prepare_model,
            "all_reduce_sum": _all_reduce_sum,
            "device": ray.train.torch.get_device(),
        }

    return Session(ctx.get_world_rank(), ctx.get_world_size(), ray.train.get_checkpoint, report, hooks)


def tune_session() -> Session:
    from ray import tune

    def report(metrics: dict[str, Any], snapshot: Path | None) -> None:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(snapshot)) if snapshot else None)

    return Session(0, 1, tune.get_checkpoint, report, dict)


def _all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)  # in place
    return tensor


# ------------------------------------------------------------ the loop
def train_worker(config: dict[str, Any]) -> None:
    """``train_loop_per_worker`` of the TorchTrainer: one rank of a data-parallel run."""
    run_worker(config, train_session())


def run_worker(config: dict[str, Any], session: Session) -> dict[str, Any]:
    """Train ``config["recipe"]`` (a plain dict) in a scratch run directory; report snapshots.

    ``config["seed_files"]``: an object ref to :func:`pack_run_dir` output (the driver's
    tokenizer, so every rank uses the same one, and its state when resuming), or None.
    ``config["data_cache"]``: the data cache the driver filled (default: this node's).
    ``config["callbacks"]``: ``"module:attr"`` names of callback factories (e.g. a test's fault).
    The latest Ray checkpoint, if any (a restarted worker group or a resumed run), wins.
    """
    _configure_logging(session.rank)
    scratch = Path(tempfile.mkdtemp(prefix=f"seq2seq-rnn-rank{session.rank}-"))
    try:
        RunDir(scratch).claim()  # before the seed files: a folder of ours from the start
        if config.get("seed_files") is not None:
            unpack_run_dir(ray.get(config["seed_files"]), scratch)
        checkpoint = session.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                restore_run_dir(Path(folder), scratch)
        recipe = validate_recipe(config["recipe"], "recipe")
        resume = RunDir(scratch).has_training_state()

        def report(metrics: dict[str, Any], checkpoints: Path | None) -> None:
            _report_snapshot(session, scratch, metrics, is_main=checkpoints is not None)

        hooks = Hooks(rank=session.rank, world_size=session.world_size, report=report, **session.hooks())
        cache = config.get("data_cache")  # the driver's data cache: the corpus was read and tokenized there
        callbacks = [import_target(name)() for name in config.get("callbacks") or ()]
        trainer = Trainer(
            recipe, scratch, resume=resume, hooks=hooks, cache_dir=Path(cache) if cache else None, callbacks=callbacks
        )
        last = trainer.fit()
        if config.get("final_report"):  # the finished state (progress.finished, last log lines)
            _report_snapshot(session, scratch, {**last, "final": True}, is_main=session.rank == 0)
        return last
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _report_snapshot(session: Session, run_dir: Path, metrics: dict[str, Any], is_main: bool) -> None:
    """Every rank calls this (Ray's report is a barrier); only rank 0 attaches a checkpoint."""
    if not is_main:
        session.report(metrics, None)
        return
    with tempfile.TemporaryDirectory(prefix="seq2seq-rnn-ckpt-", dir=run_dir.parent) as tmp:
        snapshot_run_dir(run_dir, Path(tmp))
        session.report(metrics, Path(tmp))  # uploads synchronously


def _configure_logging(rank: int) -> None:
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S"
    )
    logging.getLogger("seq2seq_rnn").setLevel(logging.INFO if rank == 0 else logging.WARNING)
