"""tools/experiments.py: a grid runs each variant once, skips finished ones, resumes cut ones,
and the report turns the runs into a table, curves and the gradient figure."""

from __future__ import annotations

import json
import os
import shutil
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
    spec = {
        "base": str(ROOT / "recipes" / "tiny.yaml"),
        "budgets": {"converged": {"extra_seeds": True, "sets": BUDGET}, "early": {"sets": BUDGET}},
        "comparisons": {
            "cell": {"variants": ["lstm_2l", "rnn_2l"], "seeds": 1},
            "repeat": {"variants": ["rnn_2l"], "seeds": 2},
        },
        "variants": variants,
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.mark.slow
def test_grid_runs_seeds_skips_finished_resumes_cut_records_and_reports(grid: Path, tmp_path: Path) -> None:
    runs, records = tmp_path / "runs" / "experiments", tmp_path / "records"
    first = experiments("run", "--grid", grid, "--runs-dir", runs, "--records", records)
    assert first.returncode == 0, first.stderr
    order = [line.split("]")[0][1:] for line in first.stdout.splitlines() if "] training:" in line]
    assert order == ["converged/lstm_2l", "converged/rnn_2l", "converged/rnn_2l.seed2"]  # seed 1 of all first
    results = {name: runs / "converged" / name / "experiment.json" for name in ("lstm_2l", "rnn_2l", "rnn_2l.seed2")}
    saved = {name: json.loads(path.read_text()) for name, path in results.items()}
    assert saved["rnn_2l"]["overrides"][-2:] == ['model.encoder.cell="rnn"', 'model.decoder.cell="rnn"']
    assert "seed=2" in saved["rnn_2l.seed2"]["overrides"] and saved["rnn_2l.seed2"]["seed"] == 2
    assert 0.0 <= saved["lstm_2l"]["test"]["bleu"] <= 100.0 and "nrefs:1" in saved["lstm_2l"]["test"]["bleu_signature"]
    assert saved["lstm_2l"]["last_step"] == 6 and len(saved["lstm_2l"]["curve"]) == 2  # validations at 3 and 6
    assert json.loads((records / "converged" / "rnn_2l.seed2.json").read_text()) == saved["rnn_2l.seed2"]
    stamps = {name: path.stat().st_mtime_ns for name, path in results.items()}

    again = experiments("run", "--grid", grid, "--runs-dir", runs, "--records", records)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("finished earlier") == 3 and "training:" not in again.stdout
    assert {name: path.stat().st_mtime_ns for name, path in results.items()} == stamps

    results["rnn_2l"].unlink()  # cut after training, before scoring: resumes, trains nothing new, scores again
    third = experiments(
        "run", "--grid", grid, "--runs-dir", runs, "--records", records, "--only", "rnn_2l", "--seeds", "1"
    )
    assert third.returncode == 0, third.stderr
    assert "[converged/rnn_2l] resuming" in third.stdout and "seed2" not in third.stdout
    assert json.loads(results["rnn_2l"].read_text())["test"] == saved["rnn_2l"]["test"]

    early = experiments("run", "--grid", grid, "--runs-dir", runs, "--records", records, "--budget", "early")
    assert early.returncode == 0, early.stderr
    assert early.stdout.count("] training:") == 2  # the early budget has one seed

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "experiments.md").write_text("# Experiments\n\nhand-written text\n")
    report = experiments("report", "--grid", grid, "--runs-dir", runs, "--records", records, "--docs", docs)
    assert report.returncode == 0, report.stderr
    page = (docs / "experiments.md").read_text()
    assert "hand-written text" in page and "`lstm_2l`" in page and "`rnn_2l`" in page
    assert f"{saved['lstm_2l']['test']['bleu']:.2f}" in page
    bleus = [saved[n]["test"]["bleu"] for n in ("rnn_2l", "rnn_2l.seed2")]
    mean = sum(bleus) / 2
    assert f"| `rnn_2l` | 2 | **{mean:.2f} ± " in page  # mean ± std over the two seeds
    assert "| cell | `rnn_2l` | `lstm_2l` |" in page and "one seed: not known" in page
    assert "Early learning" in page
    assert (docs / "images" / "experiments_val_bleu.png").stat().st_size > 1000
    assert (docs / "images" / "experiments_gradients.png").stat().st_size > 1000
    assert "| rnn | trained |" in page and "| lstm | initialised |" in page

    shutil.rmtree(runs)  # the run folders are gone (another machine): the tables come from the records
    (docs / "experiments.md").write_text("# Experiments\n")
    rebuilt = experiments("report", "--grid", grid, "--runs-dir", runs, "--records", records, "--docs", docs)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"| `rnn_2l` | 2 | **{mean:.2f} ± " in (docs / "experiments.md").read_text()


@pytest.mark.slow
def test_tune_decoding_chooses_on_validation(grid: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    trained = experiments("run", "--grid", grid, "--runs-dir", runs, "--no-records", "--only", "lstm_2l")
    assert trained.returncode == 0, trained.stderr
    tuned = experiments("tune-decoding", "--runs-dir", runs, "--grid", grid, "--only", "lstm_2l")
    assert tuned.returncode == 0, tuned.stderr
    found = json.loads((runs / "converged" / "lstm_2l" / "decoding.json").read_text())
    assert len(found["validation"]) == 1 + 3 * 3  # greedy once, then every beam × length penalty
    assert found["chosen"]["val_bleu"] == max(row["val_bleu"] for row in found["validation"])
    assert "nrefs:1" in found["test"]["bleu_signature"]


def test_unknown_variant_is_refused(grid: Path) -> None:
    proc = experiments("list", "--grid", grid, "--only", "gru_9l")
    assert proc.returncode == 2
    assert "unknown variants ['gru_9l']" in proc.stderr and "lstm_2l" in proc.stderr


def test_unknown_budget_is_refused(grid: Path) -> None:
    proc = experiments("list", "--grid", grid, "--budget", "forever")
    assert proc.returncode == 2
    assert "unknown budget 'forever'" in proc.stderr and "converged, early" in proc.stderr


def test_list_shows_budget_seed_then_variant_overrides_seed_one_first(grid: Path) -> None:
    proc = experiments("list", "--grid", grid)
    assert proc.returncode == 0, proc.stderr
    names = [line.split(" ", 1)[0] for line in proc.stdout.splitlines()]
    assert names == ["converged/lstm_2l", "converged/rnn_2l", "converged/rnn_2l.seed2"]
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert lines["converged/rnn_2l"].endswith('seed=1 model.encoder.cell="rnn" model.decoder.cell="rnn"')
    assert "seed=2" in lines["converged/rnn_2l.seed2"]
    assert "train.max_steps=6" in lines["converged/lstm_2l"]


def test_the_shipped_grid_seeds_the_compared_variants_three_times() -> None:
    proc = experiments("list")
    assert proc.returncode == 0, proc.stderr
    names = [line.split(" ", 1)[0].split("/", 1)[1] for line in proc.stdout.splitlines()]
    compared = {"rnn_2l", "lstm_2l", "gru_2l", "lstm_1l", "lstm_4l", "lstm_2l_no_attention", "lstm_2l_general"}
    compared |= {"lstm_2l_variational"}
    assert {n for n in names if n.endswith(".seed3")} == {f"{n}.seed3" for n in compared}
    assert "rnn_2l_no_clip" in names and "rnn_2l_no_clip.seed2" not in names
    assert names.index("rnn_2l_no_clip") < names.index("lstm_2l.seed2")  # every first seed before any second
    early = experiments("list", "--budget", "early")
    assert all(".seed" not in line for line in early.stdout.splitlines())
    assert "train.early_stopping_patience=5" in proc.stdout and "train.max_steps=500" in early.stdout
