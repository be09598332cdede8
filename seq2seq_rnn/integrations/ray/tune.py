"""Sweeps with Ray Tune: the recipe's ``sweep:`` section → trials of ordinary training runs.

A trial's recipe is the base recipe with the sampled values set at their dotted
keys; every recipe the space can produce is checked before the first trial
starts (all combinations of the discrete values and the bounds of the ranges,
or each key on its own when there are too many). One-worker trials run the
Trainer in the trial's process; multi-worker trials run a TorchTrainer whose
reports reach Tune through ``TuneReportCallback``.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import ray.train
from ray import tune
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from seq2seq_rnn.config import Recipe, SearchDomain, SweepConfig, apply_overrides, validate_recipe
from seq2seq_rnn.data.cache import cache_root
from seq2seq_rnn.errors import ConfigError, Seq2SeqError, UsageError
from seq2seq_rnn.integrations.ray.train import prepare_shared_data, scaling_config
from seq2seq_rnn.integrations.ray.worker import pack_run_dir, run_worker, train_worker, tune_session
from seq2seq_rnn.run.directory import RunDir
from seq2seq_rnn.run.outputs import OutputFolder

# What a sweep writes into its --output-dir; a folder holding an earlier sweep is reused whole.

log = logging.getLogger("seq2seq_rnn.integrations.ray")
DRIVER_RESOURCE = "tune_driver"  # a custom resource that counts multi-worker trials' drivers
MAX_UP_FRONT = 512  # combinations validated exhaustively before falling back to one key at a time


@dataclass
class TrialRow:
    params: dict[str, Any]
    metric: float | None
    step: int | None
    status: str


@dataclass
class SweepResult:
    rows: list[TrialRow]
    best_params: dict[str, Any] | None
    best_recipe: Path | None
    best_run: Path | None


# ------------------------------------------------------------------ recipes
def trial_recipe(base: dict[str, Any], params: dict[str, Any], source: str = "trial") -> Recipe:
    """The base recipe dict with ``params`` ({dotted key(s): value}) applied, validated."""
    raw = copy.deepcopy(base)
    raw.pop("sweep", None)
    items = [f"{path.strip()}={json.dumps(value)}" for key, value in params.items() for path in key.split(",")]
    return validate_recipe(apply_overrides(raw, items), source)


def _probe_values(domain: SearchDomain) -> list[Any]:
    if domain.choice is not None or domain.grid is not None:
        return list(domain.choice or domain.grid or [])
    if domain.randint is not None:
        return [domain.randint[0], domain.randint[1] - 1]
    return list(domain.uniform or domain.loguniform or [])


def validate_space(base: dict[str, Any], sweep: SweepConfig) -> int:
    """Check every recipe the space can produce (see module doc); returns how many were checked."""
    from seq2seq_rnn.model import check_model_config

    keys = list(sweep.space)
    values = [_probe_values(sweep.space[k]) for k in keys]
    if math.prod(len(v) for v in values) <= MAX_UP_FRONT:
        combos = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]
    else:
        first = {k: v[0] for k, v in zip(keys, values, strict=True)}
        combos = [{**first, k: value} for k, vs in zip(keys, values, strict=True) for value in vs]
    for params in combos:
        source = f"sweep.space with {params}"
        try:
            check_model_config(trial_recipe(base, params, source).model)
        except Seq2SeqError as exc:
            raise ConfigError(f"{exc}".replace("invalid recipe", "gives an invalid trial recipe")) from None
    return len(combos)


def _domain(domain: SearchDomain) -> Any:
    if domain.choice is not None:
        return tune.choice(domain.choice)
    if domain.grid is not None:
        return tune.grid_search(domain.grid)
    if domain.uniform is not None:
        return tune.uniform(*domain.uniform)
    if domain.loguniform is not None:
        return tune.loguniform(*domain.loguniform)
    assert domain.randint is not None
    return tune.randint(*domain.randint)


# ------------------------------------------------------------------ trials
def _one_worker_trial(config: dict[str, Any], base: dict[str, Any], data_cache: str) -> None:
    recipe = trial_recipe(base, config["params"])
    run_worker({"recipe": recipe.to_dict(), "seed_files": None, "data_cache": data_cache}, tune_session())


def _multi_worker_trial(config: dict[str, Any], base: dict[str, Any], storage: str) -> None:
    sweep = Recipe.model_validate(base).sweep
    assert sweep is not None
    res = sweep.resources
    recipe = trial_recipe(base, config["params"])
    with tempfile.TemporaryDirectory(prefix="seq2seq-rnn-trial-") as tmp:
        cache = prepare_shared_data(recipe, Path(tmp))  # the tokenizer and token cache, once, for all ranks
        seed = ray.put(pack_run_dir(Path(tmp), with_state=False))
    trial_id = tune.get_context().get_trial_id()
    TorchTrainer(
        train_worker,
        train_loop_config={
            "recipe": recipe.to_dict(),
            "seed_files": seed,
            "final_report": False,
            "data_cache": str(cache),
        },
        scaling_config=scaling_config(res.workers, res.cpus_per_worker, res.gpus_per_worker),
        run_config=ray.train.RunConfig(
            name=f"trial-{trial_id}",
            storage_path=storage,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            callbacks=[TuneReportCallback()],
        ),
    ).fit()


def _trainable(base: dict[str, Any], sweep: SweepConfig, storage: str) -> Any:
    res = sweep.resources
    if res.workers == 1:
        fn = tune.with_parameters(_one_worker_trial, base=base, data_cache=str(cache_root()))
        return tune.with_resources(fn, {"cpu": res.cpus_per_worker, "gpu": res.gpus_per_worker})
    fn = tune.with_parameters(_multi_worker_trial, base=base, storage=f"{storage.rstrip('/')}/trial_runs")
    # The trial's own process only waits on its workers: it must not hold a CPU they need.
    if ray.cluster_resources().get(DRIVER_RESOURCE):
        return tune.with_resources(fn, {"cpu": 0, DRIVER_RESOURCE: 1})
    return tune.with_resources(fn, {"cpu": 0.01})


def _scheduler(sweep: SweepConfig) -> Any:
    s = sweep.scheduler
    if s.type == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="training_iteration", max_t=s.max_t, grace_period=s.grace_period, reduction_factor=s.reduction_factor
    )


# ------------------------------------------------------------------ driver
def run_sweep(
    recipe: Recipe,
    output_dir: str | Path,
    address: str | None = None,
    num_samples: int | None = None,
) -> SweepResult:
    """Run ``recipe.sweep``; writes ``output_dir/best.yaml`` and ``output_dir/best_run/``."""
    if recipe.sweep is None:
        raise ConfigError("the recipe has no sweep: section; see recipes/tiny_sweep.yaml for an example")
    sweep = recipe.sweep if num_samples is None else recipe.sweep.model_copy(update={"num_samples": num_samples})
    if sweep.resources.workers > 1 and recipe.train.max_minutes:
        raise ConfigError("train.max_minutes cannot be used with multi-worker trials; use train.max_steps")
    base = {**recipe.to_dict(), "sweep": sweep.model_dump(mode="json")}
    checked = validate_space(base, sweep)
    log.info("sweep: %d trial recipe(s) checked before starting", checked)
    output = Path(output_dir).expanduser().resolve()
    folder = OutputFolder(output, "tune", strict=True)  # a folder of the user's: refused whole
    folder.check(["best.yaml"])
    for name in ("tune", "best_run"):  # folders an earlier sweep of ours recorded, or new
        if os.path.lexists(output / name) and not folder.owns_directory(name):
            raise UsageError(f"{output / name} was not made by seq2seq-rnn tune; nothing was changed")
        folder.record_directory(name)
    storage = recipe.scaling.storage_path or str(output)
    started = _connect(address or recipe.scaling.address, sweep)
    try:
        tuner = tune.Tuner(
            _trainable(base, sweep, storage),
            param_space={"params": {key: _domain(d) for key, d in sweep.space.items()}},
            tune_config=tune.TuneConfig(
                metric=sweep.metric,
                mode=sweep.resolved_mode,
                scheduler=_scheduler(sweep),
                num_samples=sweep.num_samples,
                max_concurrent_trials=sweep.max_concurrent_trials or None,
            ),
            run_config=tune.RunConfig(
                name="tune",
                storage_path=storage,
                failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            ),
        )
        grid = tuner.fit()
        return _summarise(grid, base, sweep, folder)
    finally:
        if started:
            ray.shutdown()


def _connect(address: str | None, sweep: SweepConfig) -> bool:
    if ray.is_initialized():
        return False
    if address is None and "RAY_ADDRESS" not in os.environ:
        res = sweep.resources
        cpus = os.cpu_count() or 1
        fits = max(1, int(cpus // (res.workers * res.cpus_per_worker)))
        ray.init(resources={DRIVER_RESOURCE: fits}, logging_level=logging.WARNING)
    else:
        ray.init(address=address, logging_level=logging.WARNING)
    return True


def _summarise(grid: Any, base: dict[str, Any], sweep: SweepConfig, folder: OutputFolder) -> SweepResult:
    output = folder.folder
    rows = []
    for result in grid:
        params = (result.config or {}).get("params", {})
        metrics = result.metrics or {}
        rows.append(TrialRow(params, metrics.get(sweep.metric), metrics.get("step"), _status(result, base, params)))
    best_params, best_recipe, best_run = None, None, None
    scored = [r for r in grid if (r.metrics or {}).get(sweep.metric) is not None]
    if scored:
        best = grid.get_best_result(metric=sweep.metric, mode=sweep.resolved_mode, scope="all")
        best_params = best.config["params"]
        recipe = trial_recipe(base, best_params)
        res = sweep.resources
        scaling = recipe.scaling.model_copy(
            update={
                "workers": res.workers,
                "gpus_per_worker": res.gpus_per_worker,
                "cpus_per_worker": res.cpus_per_worker,
            }
        )
        text = recipe.model_copy(update={"scaling": scaling}).to_yaml()
        best_recipe = folder.write_bytes("best.yaml", text.encode("utf-8"))
        best_run = _copy_best_run(best, output / "best_run")
    return SweepResult(rows, best_params, best_recipe, best_run)


def _status(result: Any, base: dict[str, Any], params: dict[str, Any]) -> str:
    if result.error is not None:
        return "error"
    metrics = result.metrics or {}
    train = trial_recipe(base, params).train
    step, epoch = metrics.get("step", 0), metrics.get("epoch", 0)
    done = (train.max_steps and step >= train.max_steps) or epoch >= train.max_epochs
    return "completed" if done else "stopped early"


def _copy_best_run(result: Any, dest: Path) -> Path | None:
    """The best trial's last checkpoint is a whole run directory: copy it for translate/evaluate."""
    checkpoint = result.checkpoint
    path = (result.metrics or {}).get("checkpoint_path")  # multi-worker trials (TuneReportCallback)
    if checkpoint is None and path:
        checkpoint = ray.train.Checkpoint(path)
    if checkpoint is None:
        return None
    checkpoint.to_directory(str(dest))
    return dest if RunDir(dest).recipe.is_file() else None


def format_table(result: SweepResult, metric: str) -> str:
    keys = sorted({k for row in result.rows for k in row.params})
    header = [*keys, metric, "step", "status"]
    body = [
        [*(_fmt(row.params.get(k)) for k in keys), _fmt(row.metric), _fmt(row.step), row.status] for row in result.rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)) for line in [header, *body]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
