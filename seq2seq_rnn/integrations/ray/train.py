"""Data-parallel training with Ray Train: the same Trainer loop on N workers (DDP).

The driver prepares the run directory exactly as a single-process run does
(recipe.yaml, tokenizer/) and the data once, into the data cache (Arrow files
of the splits and of their subword ids: ``training.prepare_data``); it ships the
tokenizer and the cache's location to every worker, so all ranks share one
vocabulary and open the same memory-mapped files instead of reading and
tokenizing the corpus again, and runs ``TorchTrainer``. Rank 0 reports a
snapshot of its run directory as the Ray checkpoint at each validation; a
restarted worker group (``scaling.max_failures``) or a resumed run starts from
the latest one. At the end the driver copies the final snapshot into the run
directory, which is then used like any other (translate, evaluate, --resume).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray
import ray.train
from ray.train.torch import TorchTrainer

from seq2seq_rnn.config import Recipe
from seq2seq_rnn.data.cache import cache_root
from seq2seq_rnn.errors import ConfigError, TrainingError
from seq2seq_rnn.integrations import with_scaling
from seq2seq_rnn.integrations.ray.worker import pack_run_dir, restore_run_dir, train_worker
from seq2seq_rnn.run.checkpoint import write_text_atomic
from seq2seq_rnn.run.directory import RunDir
from seq2seq_rnn.training import prepare_data, prepare_run

log = logging.getLogger("seq2seq_rnn.integrations.ray")


def train_distributed(
    recipe: Recipe,
    run_dir: str | Path,
    resume: bool = False,
    workers: int | None = None,
    gpus_per_worker: float | None = None,
    address: str | None = None,
    callbacks: Sequence[str] = (),
) -> dict[str, Any]:
    """Train ``recipe`` data-parallel on a Ray cluster; returns the last validation metrics.

    ``workers``/``gpus_per_worker``/``address`` override the recipe's ``scaling:``
    section. Without an address (or ``RAY_ADDRESS``) a local cluster is started.
    ``callbacks``: ``"module:attr"`` names of training callback factories, called with no
    arguments in every worker (their modules must be importable there).
    """
    recipe = with_scaling(recipe, workers, gpus_per_worker, address)
    scaling = recipe.scaling
    if scaling.workers > 1 and recipe.train.max_minutes:
        raise ConfigError(
            "train.max_minutes cannot be used with more than one worker (ranks would disagree on when to stop); "
            "use train.max_steps or train.max_epochs"
        )
    run = RunDir(Path(run_dir).expanduser().resolve())
    run.claim(resume)
    with run.lock("train (Ray driver)"):
        return _train_locked(recipe, run, resume, list(callbacks))


def _train_locked(recipe: Recipe, run: RunDir, resume: bool, callbacks: list[str]) -> dict[str, Any]:
    scaling = recipe.scaling
    prepare_run(recipe, run, resume)  # same checks and recipe.yaml as one process
    cache = prepare_shared_data(recipe, run.path)
    storage, name = _storage(recipe, run, resume)
    started = _connect(scaling.address)
    try:
        seed = ray.put(pack_run_dir(run.path, with_state=resume and run.has_training_state()))
        trainer = TorchTrainer(
            train_worker,
            train_loop_config={
                "recipe": recipe.to_dict(),
                "seed_files": seed,
                "final_report": True,
                "data_cache": str(cache),
                "callbacks": callbacks,
            },
            scaling_config=scaling_config(scaling.workers, scaling.cpus_per_worker, scaling.gpus_per_worker),
            run_config=ray.train.RunConfig(
                name=name,
                storage_path=storage,
                failure_config=ray.train.FailureConfig(max_failures=scaling.max_failures),
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            ),
        )
        log.info("Ray Train: %d worker(s), checkpoints in %s/%s", scaling.workers, storage, name)
        try:
            result = trainer.fit()
        except ray.train.TrainingFailedError as exc:
            _materialize_latest(storage, name, run)
            raise TrainingError(
                f"distributed training failed: {exc}\nThe last checkpoint is in {run.path}; continue with "
                f"--resume --output-dir {run.path} (or raise scaling.max_failures)"
            ) from None
        if result.checkpoint is not None:
            with result.checkpoint.as_directory() as folder:
                restore_run_dir(Path(folder), run.path)
        return {k: v for k, v in (result.metrics or {}).items() if k != "final"}
    finally:
        if started:
            ray.shutdown()


def prepare_shared_data(recipe: Recipe, run_dir: Path) -> Path:
    """Train (or keep) the tokenizer in ``run_dir`` and fill the data cache, once, in the driver.

    Returns the cache folder for the workers. The driver holds the corpus only as
    memory-mapped Arrow files; on a warm cache this opens them and returns.
    """
    cache = cache_root(None)
    prepare_data(recipe, RunDir(run_dir), cache)
    return cache


def _storage(recipe: Recipe, run: RunDir, resume: bool) -> tuple[str, str]:
    """(storage_path, name) of the Ray run: reused on --resume so Ray finds its checkpoints."""
    storage = recipe.scaling.storage_path or str(run.ray_storage)
    state_file = run.ray_state  # {"storage_path", "name"}: where this run's Ray checkpoints are
    if resume and state_file.is_file():
        state = json.loads(state_file.read_text(encoding="utf-8"))
        if state.get("storage_path") == storage:
            return storage, state["name"]
    name = f"{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    write_text_atomic(state_file, json.dumps({"storage_path": storage, "name": name}) + "\n")
    return storage, name


def _connect(address: str | None) -> bool:
    """Join ``address`` (or RAY_ADDRESS), else start a local cluster; True if this call started Ray."""
    if ray.is_initialized():
        return False
    ray.init(address=address, logging_level=logging.WARNING)
    return True


def worker_resources(cpus: float, gpus: float) -> dict[str, float]:
    return {"CPU": cpus, "GPU": gpus} if gpus else {"CPU": cpus}


def scaling_config(workers: int, cpus: float, gpus: float) -> ray.train.ScalingConfig:
    """Ray Train's scaling for ``workers`` data-parallel workers of the given size."""
    return ray.train.ScalingConfig(
        num_workers=workers, use_gpu=gpus > 0, resources_per_worker=worker_resources(cpus, gpus)
    )


def _materialize_latest(storage: str, name: str, run: RunDir) -> None:
    """After a failure: copy the newest checkpoint in storage into the run directory, if any."""
    try:
        result = ray.train.Result.from_path(f"{storage.rstrip('/')}/{name}")
        checkpoint = result.checkpoint
    except Exception as exc:  # storage unreadable or no run there: keep what the run dir has
        log.warning("could not read the checkpoints in %s/%s: %s", storage, name, exc)
        return
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            restore_run_dir(Path(folder), run.path)
