"""Export: the standalone folder translates exactly like the toolkit's greedy search, without seq2seq_rnn."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sentencepiece
import torch

from seq2seq_rnn.cli import main
from seq2seq_rnn.data.corpus import load_split
from seq2seq_rnn.inference.translator import Translator
from seq2seq_rnn.run.checkpoint import load_checkpoint, save_checkpoint
from tests.helpers import TINY, cli_env, run_cli, small_overrides, user_cell_source

ROOT = Path(__file__).resolve().parents[1]


def isolated_env() -> dict[str, str]:
    """PYTHONPATH with only the folders that hold torch and sentencepiece; run with ``python -S``
    so no .pth file (the editable install of seq2seq_rnn among them) is processed."""
    folders = {str(Path(m.__file__).resolve().parents[1]) for m in (torch, sentencepiece)}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return {**env, "PYTHONPATH": os.pathsep.join(sorted(folders)), "OMP_NUM_THREADS": "1", "PYTHONNOUSERSITE": "1"}


def run_isolated(args: list[str], cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-S", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=isolated_env(),
        timeout=300,
        check=False,
    )


def varied_checkpoint(run: Path, folder: Path) -> Path:
    """The run's weights plus fixed noise: a model whose greedy outputs differ from sentence to sentence
    (the briefly trained tiny model says "a a a ..." to everything, which would prove little)."""
    state = load_checkpoint(run / "checkpoints" / "best.pt")["model"]
    gen = torch.Generator().manual_seed(0)
    noisy = {k: v + 0.5 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v for k, v in state.items()}
    path = folder / "varied.pt"
    save_checkpoint(path, {"model": noisy})
    return path


def sentences(run: Path, n: int = 12) -> list[str]:
    recipe = Translator.load(run).recipe
    return [*load_split(recipe.data, "validation").sources[:n], "", "Hund"]


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_greedy_equals_toolkit_greedy(tiny_run: Path, tmp_path: Path, fmt: str) -> None:
    if fmt == "onnx" and importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime is not installed (pip install 'seq2seq_rnn[export]')")
    checkpoint = str(varied_checkpoint(tiny_run, tmp_path))
    export_args = ["export", str(tiny_run), "--format", fmt, "--checkpoint", checkpoint]
    assert main([*export_args, "--output", str(tmp_path / "export")]) == 0
    moved = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "export", moved)  # self-contained: works from any folder
    # the isolated interpreter cannot import seq2seq_rnn, but has torch and sentencepiece
    probe = run_isolated(["-c", "import torch, sentencepiece\nimport seq2seq_rnn"], tmp_path)
    assert "No module named 'seq2seq_rnn'" in probe.stderr, probe.stderr
    lines = sentences(tiny_run)
    proc = run_isolated([str(moved / "translate.py")], tmp_path, "\n".join(lines) + "\n")
    assert proc.returncode == 0, proc.stderr
    want = Translator.load(tiny_run, checkpoint).translate(lines, beam_size=1, batch_size=1)
    assert len(set(want)) >= len(lines) // 2, want  # varied outputs: the comparison means something
    assert proc.stdout.split("\n")[: len(lines)] == want
    assert proc.stdout.count("\n") == len(lines)


def test_export_rejects_unknown_format(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["export", str(tiny_run), "--format", "tflite", "--output", str(tmp_path)])
    assert "invalid choice" in capsys.readouterr().err


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("plugin_run")
    (folder / "user_cells.py").write_text(user_cell_source("test_export_user_cell"), encoding="utf-8")
    run = folder / "run"
    settings = small_overrides(
        train__max_steps=2,
        train__validate_every=2,
        model__encoder__cell="test_export_user_cell",
        model__decoder__cell="test_export_user_cell",
    )
    proc = run_cli("train", TINY, "--import", folder / "user_cells.py", "--output-dir", run, "--no-test", *settings)
    assert proc.returncode == 0, proc.stderr
    return run


def test_export_of_a_plugin_cell_run_is_refused_before_creating_anything(plugin_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    cells = plugin_run.parent / "user_cells.py"
    refused = run_cli("export", plugin_run, "--output", out)  # the run's plugin needs consent (issue 21)
    assert refused.returncode == 2 and f"--import {cells}" in refused.stderr and not out.exists()
    proc = run_cli("export", plugin_run, "--import", cells, "--output", out)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "cannot be traced for export" in proc.stderr and "'test_export_user_cell' (register() in" in proc.stderr
    assert not out.exists()


def test_export_onnx_without_onnxruntime_leaves_no_folder(tiny_run: Path, tmp_path: Path) -> None:
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['onnxruntime'] = None  # as if not installed\n")
    out = tmp_path / "export"
    proc = run_cli("export", tiny_run, "--format", "onnx", "--output", out, env=cli_env(PYTHONPATH=str(hide)))
    assert proc.returncode == 2, proc.stderr
    assert "needs onnx and onnxruntime" in proc.stderr
    assert not out.exists()
