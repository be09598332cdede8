"""Resume restores everything: N steps in one go equal N/2 + --resume to N, bitwise.

Runs the Trainer in-process on the shrunken tiny recipe (CPU, one thread, fixed
seed). Equality is exact (torch.equal), not a tolerance: model, optimizer and
schedule state, progress counters and RNG states must all be restored.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from seq2seq_rnn.config import Recipe, load_recipe
from seq2seq_rnn.errors import ConfigError, TrainingInterrupted
from seq2seq_rnn.training import Callback, Trainer
from tests.helpers import TINY, small_overrides

N = 20  # total steps; validate_every=5 divides N/2, so stopping at N/2 adds no extra validation


def recipe(**changes: object) -> Recipe:
    settings: dict[str, object] = {"train__validate_every": 5, "train__max_steps": N, **changes}
    return load_recipe(TINY, small_overrides(**settings)[1::2])


def last(run: Path) -> dict[str, Any]:
    return torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)


def assert_same_state(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), f"weights differ: {key}"
    opt_a, opt_b = a["optimizer"], b["optimizer"]
    assert opt_a["param_groups"] == opt_b["param_groups"]
    for index, state in opt_a["state"].items():
        for name, value in state.items():
            assert torch.equal(value, opt_b["state"][index][name]), f"optimizer state {index}.{name} differs"
    assert a["schedule"] == b["schedule"]
    progress_a = {k: v for k, v in a["progress"].items() if k != "train_seconds"}
    progress_b = {k: v for k, v in b["progress"].items() if k != "train_seconds"}
    assert progress_a == progress_b
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert a["rng"]["python"] == b["rng"]["python"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run = tmp_path_factory.mktemp("straight") / "run"
    Trainer(recipe(), run).fit()
    state = last(run)
    assert state["progress"]["step"] == N and state["progress"]["finished"]
    return state


def test_stop_at_half_then_resume_with_larger_max_steps_is_bitwise_equal(tmp_path, uninterrupted):
    run = tmp_path / "run"
    Trainer(recipe(train__max_steps=N // 2), run).fit()
    half = last(run)
    assert half["progress"]["step"] == N // 2 and half["progress"]["finished"]
    # Only train.* changed: resuming is allowed, and a finished run continues to the new max_steps.
    Trainer(recipe(), run, resume=True).fit()
    assert_same_state(last(run), uninterrupted)


def test_interrupted_mid_epoch_then_resumed_is_bitwise_equal(tmp_path, uninterrupted, monkeypatch):
    """A SIGINT between validations checkpoints mid-epoch (no validation); resume continues exactly."""
    run = tmp_path / "run"

    class SignalDuringStep9(Callback):  # what the SIGINT handler does, during the 9th step
        def on_step_begin(self, trainer: Trainer) -> None:
            if trainer.progress.step == 8:
                trainer.stop(signal.SIGINT)

    trainer = Trainer(recipe(), run, callbacks=[SignalDuringStep9()])
    with pytest.raises(TrainingInterrupted, match="--resume"):
        trainer.fit()
    saved = last(run)
    assert saved["progress"]["step"] == 9 and not saved["progress"]["finished"]
    assert saved["progress"]["batch_in_epoch"] > 0  # mid-epoch: the data position matters
    Trainer(recipe(), run, resume=True).fit()
    assert_same_state(last(run), uninterrupted)


def test_resume_refuses_a_changed_model_section(tmp_path, uninterrupted):
    run = tmp_path / "run"
    Trainer(recipe(train__max_steps=5), run).fit()
    with pytest.raises(ConfigError, match="model section differs"):
        Trainer(recipe(model__encoder__hidden_size=24), run, resume=True).prepare()
    with pytest.raises(ConfigError, match="already holds a training run"):
        Trainer(recipe(), run).prepare()


def test_resume_of_a_finished_run_with_the_same_budget_trains_no_further(tmp_path, uninterrupted):
    run = tmp_path / "run"
    Trainer(recipe(train__max_steps=5), run).fit()
    before = last(run)
    Trainer(recipe(train__max_steps=5), run, resume=True).fit()
    assert_same_state(last(run), before)
