"""The model card each training run gets: RUN_DIR/README.md."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from seq2seq_rnn.cli import main
from seq2seq_rnn.inference.translator import Translator
from seq2seq_rnn.run.modelcard import write_model_card


def test_train_writes_a_model_card(tiny_run: Path) -> None:
    card = (tiny_run / "README.md").read_text(encoding="utf-8")
    n_params = sum(p.numel() for p in Translator.load(tiny_run).model.parameters())
    assert f"parameters: {n_params:,}" in card
    for section in ("## Data", "## Model", "## Training", "## Scores", "## Reproduce"):
        assert section in card
    assert "train.de.gz" in card and "bytes" in card and "first 300 pairs" in card
    assert "20 steps" in card and "torch " in card and "CPU: " in card
    assert "best validation (step" in card and "tok:13a" in card  # a score always with its signature
    assert "seq2seq-rnn train " in card and "--set train.max_steps=20" in card and str(tiny_run) in card


def test_model_card_includes_test_scores(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert main(["evaluate", str(run), "--split", "test"]) == 0
    card = write_model_card(run).read_text(encoding="utf-8")
    test_row = next(line for line in card.splitlines() if line.startswith("| test |"))
    assert "best checkpoint, beam 2" in test_row
    assert "chrF2" not in test_row and "nc:6" in test_row and "tok:13a" in test_row
    assert "\\|" in test_row  # the signatures' pipes are escaped inside the Markdown table
