"""Defects found in review (#13), each with the test that failed before its fix."""

from __future__ import annotations

import argparse
import ast
import re
import shutil
from pathlib import Path

import pytest
import torch

from seq2seq_rnn.cli import _members, main
from seq2seq_rnn.config import load_recipe
from seq2seq_rnn.errors import ConfigError, UsageError
from seq2seq_rnn.inference.translator import Translator
from seq2seq_rnn.run.directory import RunDir
from seq2seq_rnn.training import Trainer, load_scaler_state
from tests.helpers import ROOT, TINY, small_overrides

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a CPU-only host")


@no_cuda
def test_fp16_with_device_auto_on_a_cpu_only_host_is_refused(tmp_path: Path) -> None:
    recipe = load_recipe(TINY, ["train.amp=fp16", "train.device=auto"])
    with pytest.raises(ConfigError, match=r"train\.amp: 'fp16' needs a CUDA device.*'auto' found cpu"):
        Trainer(recipe, tmp_path / "run").prepare()
    assert not (tmp_path / "run").exists()  # refused before the run directory is written


def test_an_empty_scaler_state_is_not_loaded_into_an_enabled_scaler() -> None:
    saved_by_amp_none = torch.amp.GradScaler("cpu", enabled=False).state_dict()
    assert saved_by_amp_none == {}
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, enabled=True)
    with pytest.raises(RuntimeError, match="empty"):
        scaler.load_state_dict(saved_by_amp_none)  # what resuming did before
    load_scaler_state(scaler, saved_by_amp_none)  # starts afresh
    assert scaler.get_scale() == 2.0**10
    load_scaler_state(scaler, torch.amp.GradScaler("cpu", init_scale=8.0, enabled=True).state_dict())
    assert scaler.get_scale() == 8.0


def test_resuming_with_fp16_a_run_trained_with_amp_none(tiny_run: Path, tmp_path: Path) -> None:
    """The restore path itself, with a real enabled scaler (fp16 scaling needs CUDA; its CPU twin
    has the same state handling)."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    trainer = Trainer(load_recipe(run / "recipe.yaml"), run, resume=True)
    parts = trainer.prepare()
    parts.checkpoints.scaler = torch.amp.GradScaler("cpu", enabled=True)
    parts.checkpoints.restore()  # raised "The source state dict is empty" before
    assert trainer.progress.step == 20


def test_first_loss_after_a_resume_covers_the_whole_logging_window(tmp_path: Path) -> None:
    def train(run: Path, max_steps: int, resume: bool = False) -> dict[int, float]:
        overrides = small_overrides(train__max_steps=max_steps, train__log_every=5, train__validate_every=7)
        Trainer(load_recipe(TINY, overrides[1::2]), run, resume=resume).fit()
        return {r["step"]: r["loss"] for r in RunDir(run).read_metrics() if "loss" in r}

    threads = torch.get_num_threads()
    try:
        whole = train(tmp_path / "whole", 10)
        train(tmp_path / "split", 7)  # checkpoint at step 7, inside the logging window of steps 6-10
        split = train(tmp_path / "split", 10, resume=True)
    finally:
        torch.set_num_threads(threads)
    # before, the resumed run's step-10 line covered steps 8-10 only
    assert split == whole and sorted(whole) == [5, 10]


@no_cuda
def test_translate_device_errors_name_the_option(tiny_run: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--device: 'cuda' was requested"):
        Translator.load(tiny_run, device="cuda")


def test_docstrings_name_test_files_that_exist() -> None:
    for path in (ROOT / "seq2seq_rnn").rglob("*.py"):
        for name in re.findall(r"tests/(test_\w+\.py)", path.read_text(encoding="utf-8")):
            assert (ROOT / "tests" / name).is_file(), f"{path.name} names tests/{name}, which does not exist"
    assert "run()" not in (Trainer.__doc__ or "") and "fit" in (Trainer.__doc__ or "")


def test_no_bare_seq2seq_error_is_raised() -> None:
    for path in (ROOT / "seq2seq_rnn").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                func = node.exc.func
                assert not (isinstance(func, ast.Name) and func.id == "Seq2SeqError"), f"{path}:{node.lineno}"


def test_cli_usage_errors_have_their_type(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(run_dirs=[Path("a"), Path("b"), Path("c")], checkpoint=["best", "last"])
    with pytest.raises(UsageError, match="3 run directories but 2 --checkpoint values"):
        _members(args)
    assert main(["evaluate", "runs/none", "--src", "x.de"]) == 2
    assert "error: --src and --ref go together" in capsys.readouterr().err
