"""The training package's public parts, used the way the Ray driver, the tools and a
callback author use them (the Trainer is one composition of these)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import torch

from seq2seq_rnn.config import load_recipe
from seq2seq_rnn.data.cache import cache_root
from seq2seq_rnn.run.checkpoint import load_checkpoint
from seq2seq_rnn.run.directory import RunDir
from seq2seq_rnn.training import (
    Callback,
    Hooks,
    Progress,
    Trainer,
    Window,
    build_parts,
    prepare_data,
    prepare_process,
    prepare_run,
    seed_everything,
    train_batch,
)
from tests.helpers import ROOT, TINY, small_overrides


def recipe(**changes: object):  # type: ignore[no-untyped-def]
    settings = {"train__max_steps": 4, "train__validate_every": 2, "train__log_every": 1, **changes}
    return load_recipe(TINY, small_overrides(**settings)[1::2])


class Recorder(Callback):
    """Every event with the step it came at and, for validations, the step in last.pt then."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, Any]] = []

    def _saved_step(self, trainer: Trainer) -> int | None:
        last = trainer.run.last
        return load_checkpoint(last)["progress"]["step"] if last.is_file() else None

    def on_train_begin(self, trainer: Trainer) -> None:
        self.events.append(("train_begin", trainer.progress.step, None))

    def on_step_begin(self, trainer: Trainer) -> None:
        self.events.append(("step_begin", trainer.progress.step, None))

    def on_step_end(self, trainer: Trainer, loss: float, tokens: int) -> None:
        self.events.append(("step_end", trainer.progress.step, tokens))

    def on_log(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        self.events.append(("log", metrics["step"], None))

    def on_validation(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        self.events.append(("validation", metrics["step"], self._saved_step(trainer)))

    def on_checkpoint(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        self.events.append(("checkpoint", metrics["step"], self._saved_step(trainer)))

    def on_train_end(self, trainer: Trainer) -> None:
        self.events.append(("train_end", trainer.progress.step, None))


def test_callbacks_see_the_named_events_in_order(tmp_path: Path) -> None:
    recorder = Recorder()
    Trainer(recipe(), tmp_path / "run", callbacks=[recorder]).fit()
    names = [name for name, _, _ in recorder.events]
    assert names[0] == "train_begin" and names[-1] == "train_end"
    steps = [(step, tokens) for name, step, tokens in recorder.events if name == "step_end"]
    assert [s for s, _ in steps] == [1, 2, 3, 4] and all(tokens > 0 for _, tokens in steps)
    assert [s for n, s, _ in recorder.events if n == "step_begin"] == [0, 1, 2, 3]
    assert [s for n, s, _ in recorder.events if n == "log"] == [1, 2, 3, 4]
    validations = [(s, saved) for n, s, saved in recorder.events if n == "validation"]
    checkpoints = [(s, saved) for n, s, saved in recorder.events if n == "checkpoint"]
    # the metrics line comes before last.pt (a kill in between repeats it); the checkpoint event after it
    assert validations == [(2, None), (4, 2)]
    assert checkpoints == [(2, 2), (4, 4)]
    assert names.index("validation") < names.index("checkpoint")
    rows = RunDir(tmp_path / "run").read_metrics()
    assert [r["step"] for r in rows if "val_bleu" in r] == [2, 4]  # the built-in MetricsFile callback


def test_set_up_functions_compose_without_a_trainer(tmp_path: Path) -> None:
    """What tools/bench_data.py does: prepare, one update, save last.pt, restore it elsewhere."""
    cfg, run, hooks = recipe(), RunDir(tmp_path / "run"), Hooks()
    device = prepare_process(cfg)
    prepare_run(cfg, run, resume=False)
    seed_everything(cfg)
    data = prepare_data(cfg, run, cache_root(tmp_path / "cache"))
    assert run.recipe.is_file() and run.data_counts.is_file()
    progress = Progress()
    parts = build_parts(cfg, run, hooks, device, data, progress, Window())
    before = {k: v.clone() for k, v in parts.model.state_dict().items()}
    loss, tokens = parts.updater.step(train_batch(data, parts.sampler.plan(0).batch(0), device), progress, str)
    assert tokens > 0 and loss > 0
    assert any(not torch.equal(before[k], v) for k, v in parts.model.state_dict().items())
    progress.step = 1
    parts.checkpoints.save_last()
    again = build_parts(cfg, run, hooks, device, data, Progress(), Window())
    again.checkpoints.restore()
    assert again.checkpoints.progress.step == 1
    for key, value in parts.model.state_dict().items():
        assert torch.equal(value, again.model.state_dict()[key]), key
    for key, value in parts.optimizer.state_dict()["state"].items():
        assert torch.equal(value["exp_avg"], again.optimizer.state_dict()["state"][key]["exp_avg"])


def test_training_classes_are_small_and_set_every_attribute_in_init() -> None:
    for path in sorted((ROOT / "seq2seq_rnn" / "training").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            assert node.end_lineno - node.lineno < 225, f"{path.name}:{node.name} has grown past ~200 lines"
            assigned: dict[str, set[str]] = {}
            for method in (n for n in node.body if isinstance(n, ast.FunctionDef)):
                for target in ast.walk(method):
                    if (
                        isinstance(target, ast.Attribute)
                        and isinstance(target.ctx, ast.Store)
                        and isinstance(target.value, ast.Name)
                        and target.value.id == "self"
                    ):
                        assigned.setdefault(method.name, set()).add(target.attr)
            if "__init__" not in assigned:
                continue
            late = set().union(*(v for k, v in assigned.items() if k != "__init__")) - assigned["__init__"]
            assert not late, f"{path.name}:{node.name} creates {sorted(late)} outside __init__"


def test_run_dir_names_what_travels_with_a_ray_snapshot(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    for path in (run.recipe, run.tokenizer / "joint.model", run.metrics, run.last, run.best, run.log):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")  # not part of a run: never snapshotted
    names = {str(p.relative_to(tmp_path)) for p in run.snapshot_files(with_state=False)}
    assert names == {"recipe.yaml", "tokenizer/joint.model"}
    names = {str(p.relative_to(tmp_path)) for p in run.snapshot_files()}
    assert names == {
        "recipe.yaml", "tokenizer/joint.model", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/best.pt",
        "train.log",
    }  # fmt: skip
