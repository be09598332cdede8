"""Shared fixtures: a CLI runner and one trained tiny run per session.
Helpers (the small recipe, run_cli, ...) live in tests/helpers.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import TINY, run_cli, small_overrides

# One data cache per test session (inherited by CLI subprocesses and Ray workers), never ~/.cache;
# removed at the end of the session unless the caller chose it.
_SESSION_CACHE = None if "SEQ2SEQ_RNN_CACHE" in os.environ else tempfile.mkdtemp(prefix="seq2seq-rnn-test-cache-")
if _SESSION_CACHE:
    os.environ["SEQ2SEQ_RNN_CACHE"] = _SESSION_CACHE


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _SESSION_CACHE:
        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


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
