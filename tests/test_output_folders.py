"""export, plot and translate --attention-plot write only into a new or empty folder, or
one that holds their own earlier output: a user's folder (``--output .``) is refused
before anything is written, and every file in it stays as it was."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from seq2seq_rnn.cli import main
from seq2seq_rnn.run.outputs import MANIFEST, OutputFolder
from tests.helpers import ROOT


def user_folder(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    folder = tmp_path / "project"
    folder.mkdir()
    files = {"README.md": b"my project\n", "config.json": b'{"mine": true}\n', "loss.png": b"my figure"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder, files


def unchanged(folder: Path, files: dict[str, bytes]) -> bool:
    return {p.name: p.read_bytes() for p in folder.iterdir()} == files


@pytest.mark.parametrize(
    "command",
    [
        ["export", "{run}", "--output", "{out}"],
        ["export", "{run}", "--format", "onnx", "--output", "{out}"],
        ["plot", "{run}", "--output", "{out}"],
    ],
    ids=["export", "export-onnx", "plot"],
)
def test_a_users_folder_is_refused_and_left_as_it_was(tiny_run, tmp_path, capsys, command) -> None:
    folder, files = user_folder(tmp_path)
    args = [part.format(run=tiny_run, out=folder) for part in command]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert str(folder) in err and "README.md" in err and "nothing was changed" in err
    assert unchanged(folder, files)


def test_attention_plots_refuse_a_users_folder(tiny_run, tmp_path, capsys, monkeypatch) -> None:
    folder, files = user_folder(tmp_path)
    source = tmp_path / "in.txt"
    source.write_text("Ein Hund läuft.\n", encoding="utf-8")
    with source.open("rb") as handle:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(handle, encoding="utf-8"))
        assert main(["translate", str(tiny_run), "--attention-plot", str(folder)]) == 2
    assert "README.md" in capsys.readouterr().err
    assert unchanged(folder, files)


def test_a_file_given_as_the_folder_is_refused(tiny_run, tmp_path, capsys) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    assert main(["plot", str(tiny_run), "--output", str(target)]) == 2
    assert "is a file" in capsys.readouterr().err and target.read_text() == "keep me"


def test_an_earlier_output_is_replaced(tiny_run, tmp_path, capsys) -> None:
    """Running the same command again into its own folder works (and an empty folder is fine)."""
    plots, export = tmp_path / "plots", tmp_path / "export"
    export.mkdir()
    for _ in range(2):
        assert main(["plot", str(tiny_run), "--output", str(plots)]) == 0
        assert main(["export", str(tiny_run), "--output", str(export)]) == 0
    assert sorted(p.name for p in plots.iterdir()) == [MANIFEST, "bleu.png", "loss.png", "lr.png"]
    assert {"config.json", "translate.py", "encoder.pt", "decoder_step.pt"} <= {p.name for p in export.iterdir()}


def test_tune_refuses_a_users_folder_before_starting_ray(tmp_path, capsys, monkeypatch) -> None:
    pytest.importorskip("ray")
    import seq2seq_rnn.integrations.ray.tune as tune

    def no_ray(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("Ray was started for a refused folder")

    monkeypatch.setattr(tune, "_connect", no_ray)
    folder, files = user_folder(tmp_path)
    assert main(["tune", str(ROOT / "recipes" / "tiny_sweep.yaml"), "--output-dir", str(folder)]) == 2
    assert "README.md" in capsys.readouterr().err
    assert unchanged(folder, files)
    earlier = tmp_path / "sweep"  # an earlier sweep's folder (its manifest says so) is accepted: it reaches Ray
    OutputFolder(earlier, "tune").record_directory("tune")
    (earlier / "tune").mkdir(parents=True)
    (earlier / "notes.txt").write_text("kept")
    with pytest.raises(AssertionError, match="Ray was started"):
        main(["tune", str(ROOT / "recipes" / "tiny_sweep.yaml"), "--output-dir", str(earlier)])
