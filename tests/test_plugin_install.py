"""The example plugin, installed for real with pip, used from the command line.

pip writes the distribution's metadata (``*.dist-info/entry_points.txt``) into
a target folder; subprocesses with that folder on PYTHONPATH must find the
``layernorm_lstm`` cell through the entry point alone, train with it, and
translate from the run directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "plugins" / "seq2seq-rnn-layernorm"

pytestmark = pytest.mark.slow

# recipes/tiny.yaml made smaller still: seconds per run on one thread
SHRINK = [
    "train.threads=1",
    "data.train.limit=300",
    "data.validation.limit=20",
    "tokenizer.vocab_size=200",
    "model.encoder.hidden_size=32",
    "model.encoder.embedding_size=32",
    "model.decoder.hidden_size=32",
    "model.decoder.embedding_size=32",
    "train.validate_every=15",
]


def sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def run_cli(*args: str, site: Path | None, stdin: str = "", timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if site is not None:
        env["PYTHONPATH"] = str(site)
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "seq2seq_rnn.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pip-install the plugin (offline: no deps, no build isolation) into a folder."""
    base = tmp_path_factory.mktemp("plugin")
    source = base / "src"
    # build from a copy, so pip's build/ and *.egg-info never land in the repository
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = base / "site"
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        env=env,
        timeout=300,
    )
    assert list(target.glob("seq2seq_rnn_layernorm-0.1.0.dist-info/entry_points.txt"))
    return target


def test_list_cells_shows_the_plugin_and_its_distribution(site: Path) -> None:
    listed = run_cli("list-cells", site=site)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split(None, 1)[1] for line in listed.stdout.splitlines() if line.strip()}
    assert rows["layernorm_lstm"].startswith("seq2seq-rnn-layernorm 0.1.0")
    assert rows["lstm"] == "built-in"

    without = run_cli("list-cells", site=None)
    assert without.returncode == 0 and "layernorm_lstm" not in without.stdout


def test_train_and_translate_with_the_plugin_cell(site: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cells = ["model.encoder.cell=layernorm_lstm", "model.decoder.cell=layernorm_lstm", "train.max_steps=30"]
    train = run_cli(
        "train", "recipes/tiny.yaml", *sets(*cells, *SHRINK), "--output-dir", str(run_dir), "--no-test", site=site
    )
    assert train.returncode == 0, train.stderr[-3000:]

    sentences = "Ein Mann fährt Fahrrad.\nZwei Hunde spielen im Schnee.\n"
    translated = run_cli("translate", str(run_dir), "--beam-size", "2", site=site, stdin=sentences)
    assert translated.returncode == 0, translated.stderr[-3000:]
    assert len(translated.stdout.splitlines()) == 2

    # the run needs the plugin: without it, a clear error naming the cell, not a traceback
    missing = run_cli("translate", str(run_dir), site=None, stdin=sentences)
    assert missing.returncode == 2, missing.stderr[-3000:]
    assert "layernorm_lstm" in missing.stderr and "Traceback" not in missing.stderr
