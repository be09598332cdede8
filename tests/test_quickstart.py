"""The README's first command, tools/quickstart.sh: a fresh start trains and prints the
test scores with their signatures; a second call continues the run instead of failing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT, cli_env

SHRINK = [
    *("--set", "train.max_steps=2", "--set", "train.validate_every=2", "--set", "train.threads=1"),
    *("--set", "data.validation.limit=10", "--set", "data.test.limit=10"),
    *("--set", "model.encoder.hidden_size=32", "--set", "model.decoder.hidden_size=32"),
    *("--set", "model.encoder.embedding_size=32", "--set", "model.decoder.embedding_size=32"),
]


def quickstart(run_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**cli_env(), "QUICKSTART_RUN_DIR": str(run_dir), "PYTHON": os.environ.get("PYTHON", "python3")}
    return subprocess.run(
        ["bash", str(ROOT / "tools" / "quickstart.sh"), *SHRINK],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=900,
    )


@pytest.mark.slow
def test_quickstart_trains_from_nothing_then_continues(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "multi30k_de_en_lstm"
    first = quickstart(run_dir)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "BLEU =" in first.stdout and "nrefs:1|case:mixed" in first.stdout
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    again = quickstart(run_dir)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "BLEU =" in again.stdout
