"""tools/experiments.py: a grid runs each variant once, skips finished ones, resumes cut ones,
and the report turns the runs into a table, curves and the gradient figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "experiments.py"

BUDGET = {
    "train.threads": 1,
    "data.train.limit": 300,
    "data.validation.limit": 20,
    "data.test.limit": 20,
    "tokenizer.vocab_size": 200,
    "model.encoder.embedding_size": 16,
    "model.encoder.hidden_size": 16,
    "model.decoder.embedding_size": 16,
    "model.decoder.hidden_size": 16,
    "train.max_epochs": 100,
    "train.max_steps": 6,
    "train.validate_every": 3,
    "train.log_every": 2,
    "decode.beam_size": 2,
}


def experiments(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600
    )


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    path = tmp_path / "grid.yaml"
    variants = {"lstm_2l": {}, "rnn_2l": {"model.encoder.cell": "rnn", "model.decoder.cell": "rnn"}}
    path.write_text(
        yaml.safe_dump(
            {"base": str(ROOT / "recipes" / "tiny.yaml"), "budget": BUDGET, "variants": variants}, sort_keys=False
        )
    )
    return path


@pytest.mark.slow
def test_grid_runs_skips_finished_resumes_cut_and_reports(grid: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = experiments("run", "--grid", grid, "--runs-dir", runs)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("] training:") == 2
    results = {name: runs / name / "experiment.json" for name in ("lstm_2l", "rnn_2l")}
    saved = {name: json.loads(path.read_text()) for name, path in results.items()}
    assert saved["rnn_2l"]["overrides"][-2:] == ['model.encoder.cell="rnn"', 'model.decoder.cell="rnn"']
    assert 0.0 <= saved["lstm_2l"]["test"]["bleu"] <= 100.0 and "nrefs:1" in saved["lstm_2l"]["test"]["bleu_signature"]
    stamps = {name: path.stat().st_mtime_ns for name, path in results.items()}

    again = experiments("run", "--grid", grid, "--runs-dir", runs)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("finished earlier") == 2 and "training:" not in again.stdout
    assert {name: path.stat().st_mtime_ns for name, path in results.items()} == stamps

    results["rnn_2l"].unlink()  # cut after training, before scoring: resumes, trains nothing new, scores again
    third = experiments("run", "--grid", grid, "--runs-dir", runs, "--only", "rnn_2l")
    assert third.returncode == 0, third.stderr
    assert "[rnn_2l] resuming" in third.stdout
    assert json.loads(results["rnn_2l"].read_text())["test"] == saved["rnn_2l"]["test"]

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "experiments.md").write_text("# Experiments\n\nhand-written text\n")
    report = experiments("report", "--grid", grid, "--runs-dir", runs, "--docs", docs)
    assert report.returncode == 0, report.stderr
    page = (docs / "experiments.md").read_text()
    assert "hand-written text" in page and "`lstm_2l`" in page and "`rnn_2l`" in page
    assert f"{saved['lstm_2l']['test']['bleu']:.2f}" in page
    assert (docs / "images" / "experiments_val_bleu.png").stat().st_size > 1000
    assert (docs / "images" / "experiments_gradients.png").stat().st_size > 1000
    assert "| rnn | trained |" in page and "| lstm | initialised |" in page

    tuned = experiments("tune-decoding", "--runs-dir", runs, "--grid", grid, "--only", "lstm_2l")
    assert tuned.returncode == 0, tuned.stderr
    found = json.loads((runs / "lstm_2l" / "decoding.json").read_text())
    assert len(found["validation"]) == 1 + 3 * 3  # greedy once, then every beam × length penalty
    assert found["chosen"]["val_bleu"] == max(row["val_bleu"] for row in found["validation"])
    assert "nrefs:1" in found["test"]["bleu_signature"]


def test_unknown_variant_is_refused(grid: Path) -> None:
    proc = experiments("list", "--grid", grid, "--only", "gru_9l")
    assert proc.returncode == 2
    assert "unknown variants ['gru_9l']" in proc.stderr and "lstm_2l" in proc.stderr


def test_list_shows_budget_then_variant_overrides(grid: Path) -> None:
    proc = experiments("list", "--grid", grid)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert lines["rnn_2l"].endswith('model.encoder.cell="rnn" model.decoder.cell="rnn"')
    assert "train.max_steps=6" in lines["lstm_2l"]
