"""Shared fixtures: a shrunken tiny recipe, a CLI runner, and one trained tiny run per session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "recipes" / "tiny.yaml"

# recipes/tiny.yaml shrunk further so a training run takes seconds on one thread.
SMALL = {
    "train.threads": "1",
    "data.train.limit": "300",
    "data.validation.limit": "20",
    "data.test.limit": "20",
    "tokenizer.vocab_size": "200",
    "model.encoder.embedding_size": "16",
    "model.encoder.hidden_size": "16",
    "model.encoder.layers": "1",
    "model.decoder.embedding_size": "16",
    "model.decoder.hidden_size": "16",
    "model.decoder.layers": "1",
    "train.max_epochs": "100",
    "train.max_steps": "20",
    "train.validate_every": "10",
    "train.log_every": "5",
    "decode.beam_size": "2",
}


def small_overrides(**changes: object) -> list[str]:
    """``--set`` arguments for the small recipe; ``changes`` use ``__`` for dots (train__max_steps=40)."""
    values = dict(SMALL)
    values.update({key.replace("__", "."): str(value) for key, value in changes.items()})
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def cli_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_cli(*args: str | Path, stdin: bytes | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m seq2seq_rnn.cli ARGS`` in a subprocess (stdin bytes in, text out)."""
    proc = subprocess.run(
        [sys.executable, "-m", "seq2seq_rnn.cli", *map(str, args)],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        env=cli_env(),
        timeout=timeout,
        check=False,
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    )


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_cli


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained once per session through the CLI; treat it as read-only."""
    run = tmp_path_factory.mktemp("tiny") / "run"
    proc = run_cli("train", TINY, "--output-dir", run, "--no-test", *small_overrides())
    assert proc.returncode == 0, proc.stderr
    return run
