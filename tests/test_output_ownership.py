"""No command writes over a file it did not create (issue 21, class 2).

Ownership comes from the manifest our code writes (names and hashes), never from a
file's name; an output is never one of the inputs, however it is spelled (symlink,
hard link, ``..``); ``average`` never replaces a run's checkpoints or recipe.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest

from seq2seq_rnn.cli import main
from seq2seq_rnn.errors import UsageError
from seq2seq_rnn.run.outputs import MANIFEST, OutputFolder, check_output_file


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes (the run's lock file aside: each command that takes the lock rewrites it)."""
    files = (p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "seq2seq_rnn.lock")
    return {str(p.relative_to(folder)): p.read_bytes() for p in files}


@pytest.fixture
def run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny run: hostile commands may try to damage it."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, symlinks=True)
    return run


# ------------------------------------------------------------------ the helper itself
def test_a_file_is_ours_only_while_the_manifest_records_its_content(tmp_path: Path) -> None:
    folder = OutputFolder(tmp_path / "out", "export", strict=True)
    folder.check(["config.json"])
    folder.write_bytes("config.json", b"ours\n")
    again = OutputFolder(tmp_path / "out", "export", strict=True)
    again.check(["config.json"])  # an earlier output of ours, unchanged: may be replaced
    (tmp_path / "out" / "config.json").write_bytes(b"edited by the user\n")
    with pytest.raises(UsageError, match="was changed since"):
        OutputFolder(tmp_path / "out", "export", strict=True).check(["config.json"])


def test_a_users_file_with_our_name_is_not_ours(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "spm.model").write_bytes(b"the user's own model")
    with pytest.raises(UsageError, match="was not written by"):
        OutputFolder(tmp_path / "out", "export").check(["spm.model"])


def test_a_garbled_manifest_gives_no_ownership(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_bytes(b"mine")
    (out / MANIFEST).write_text("{not json", encoding="utf-8")
    with pytest.raises(UsageError, match="not a manifest"):
        OutputFolder(out, "export").check(["config.json"])


@pytest.mark.parametrize("spelling", ["symlink", "hardlink", "dotdot"])
def test_an_output_is_never_an_input(tmp_path: Path, spelling: str) -> None:
    source = tmp_path / "data" / "in.txt"
    source.parent.mkdir()
    source.write_text("keep me\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    if spelling == "symlink":
        (out / "in.txt").symlink_to(source)
        target, inputs = out / "in.txt", [source]
    elif spelling == "hardlink":
        os.link(source, out / "in.txt")
        target, inputs = out / "in.txt", [source]
    else:
        target, inputs = tmp_path / "data" / "in.txt", [tmp_path / "out" / ".." / "data" / "in.txt"]
    with pytest.raises(UsageError):
        OutputFolder(target.parent, "translate --ray", inputs).check([target.name])
    assert source.read_text(encoding="utf-8") == "keep me\n"


def test_a_symlink_at_an_output_path_is_never_written_through(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("keep", encoding="utf-8")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "loss.png").symlink_to(elsewhere)
    with pytest.raises(UsageError, match="symbolic link"):
        check_output_file(tmp_path / "out" / "loss.png", "plot")
    assert elsewhere.read_text(encoding="utf-8") == "keep"


# ------------------------------------------------------------------ export
@pytest.mark.parametrize("name", ["config.json", "translate.py", "spm.model", "encoder.pt"])
def test_export_never_overwrites_a_users_file_with_one_of_its_names(tiny_run, tmp_path, capsys, name) -> None:
    out = tmp_path / "export"
    out.mkdir()
    (out / name).write_bytes(b"the user's own file\n")
    assert main(["export", str(tiny_run), "--output", str(out)]) == 2
    assert "nothing was changed" in capsys.readouterr().err
    assert snapshot(out) == {name: b"the user's own file\n"}


def test_export_replaces_its_own_earlier_output_but_not_an_edited_file(tiny_run, tmp_path, capsys) -> None:
    out = tmp_path / "export"
    assert main(["export", str(tiny_run), "--output", str(out)]) == 0
    assert main(["export", str(tiny_run), "--output", str(out)]) == 0  # its own output: replaced
    (out / "translate.py").write_text("# my edits\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["export", str(tiny_run), "--output", str(out)]) == 2
    assert "translate.py" in capsys.readouterr().err
    assert (out / "translate.py").read_text(encoding="utf-8") == "# my edits\n"


@pytest.mark.parametrize("where", ["run", "tokenizer", "checkpoints"])
def test_export_into_the_run_itself_is_refused(run_copy, capsys, where) -> None:
    target = {"run": run_copy, "tokenizer": run_copy / "tokenizer", "checkpoints": run_copy / "checkpoints"}[where]
    before = snapshot(run_copy)
    assert main(["export", str(run_copy), "--output", str(target)]) == 2
    assert snapshot(run_copy) == before


# ------------------------------------------------------------------ average
@pytest.mark.parametrize("name", ["recipe.yaml", "checkpoints/best.pt", "checkpoints/last.pt", "seq2seq_rnn.json"])
def test_average_never_writes_over_a_run_file(run_copy, capsys, name) -> None:
    before = snapshot(run_copy)
    ckpts = [str(run_copy / "checkpoints" / "last.pt"), str(run_copy / "checkpoints" / "best.pt")]
    code = main(["average", str(run_copy), "--checkpoints", *ckpts, "--output", str(run_copy / name)])
    assert code == 2, capsys.readouterr()
    assert snapshot(run_copy) == before  # so --resume and translate find the run as it was


def test_average_refuses_a_new_best_pt_and_its_own_inputs(run_copy, tmp_path, capsys) -> None:
    best = run_copy / "checkpoints" / "best.pt"
    last = run_copy / "checkpoints" / "last.pt"
    copy = tmp_path / "copy.pt"
    shutil.copy2(last, copy)
    link = tmp_path / "link.pt"
    link.symlink_to(copy)
    hard = tmp_path / "hard.pt"
    os.link(copy, hard)
    before = copy.read_bytes()
    for output in (link, hard, tmp_path / "sub" / ".." / "copy.pt"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        assert main(["average", str(run_copy), "--checkpoints", str(copy), str(last), "--output", str(output)]) == 2
    assert copy.read_bytes() == before
    best.unlink()  # a run that lost best.pt: average may not invent one
    assert main(["average", str(run_copy), "--checkpoints", str(last), str(copy), "--output", str(best)]) == 2
    assert not best.exists()
    capsys.readouterr()


def test_average_writes_a_new_file_and_replaces_only_its_own(run_copy, tmp_path, capsys) -> None:
    ckpts = [str(run_copy / "checkpoints" / "last.pt"), str(run_copy / "checkpoints" / "best.pt")]
    assert main(["average", str(run_copy), "--checkpoints", *ckpts]) == 0  # the default: checkpoints/averaged.pt
    assert main(["average", str(run_copy), "--checkpoints", *ckpts]) == 0  # its own earlier output
    mine = tmp_path / "mine.pt"
    mine.write_bytes(b"not a checkpoint of seq2seq-rnn")
    assert main(["average", str(run_copy), "--checkpoints", *ckpts, "--output", str(mine)]) == 2
    assert mine.read_bytes() == b"not a checkpoint of seq2seq-rnn"
    assert main(["average", str(run_copy), "--checkpoints", *ckpts, "--output", str(tmp_path / "new.pt")]) == 0
    capsys.readouterr()


# ------------------------------------------------------------------ plots
def test_plot_never_overwrites_a_users_png_with_one_of_its_names(tiny_run, tmp_path, capsys) -> None:
    out = tmp_path / "figures"
    out.mkdir()
    (out / "loss.png").write_bytes(b"my figure")
    assert main(["plot", str(tiny_run), "--output", str(out)]) == 2
    assert snapshot(out) == {"loss.png": b"my figure"}
    assert main(["plot", str(tiny_run), "--output", str(tmp_path / "new")]) == 0
    assert main(["plot", str(tiny_run), "--output", str(tmp_path / "new")]) == 0  # its own: replaced
    capsys.readouterr()


def test_attention_plots_never_overwrite_a_users_png(tiny_run, tmp_path, capsys, monkeypatch) -> None:
    out = tmp_path / "maps"
    out.mkdir()
    (out / "attention-0001.png").write_bytes(b"my figure")
    source = tmp_path / "in.txt"
    source.write_text("Ein Hund läuft.\n", encoding="utf-8")
    with source.open("rb") as handle:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(handle, encoding="utf-8"))
        assert main(["translate", str(tiny_run), "--attention-plot", str(out)]) == 2
    assert snapshot(out) == {"attention-0001.png": b"my figure"}
    capsys.readouterr()


# ------------------------------------------------------------------ translate --ray
@pytest.mark.ray
@pytest.mark.parametrize("spelling", ["same-folder", "symlink", "hardlink", "dotdot"])
def test_translate_ray_never_overwrites_an_input(tiny_run, tmp_path, capsys, spelling) -> None:
    data = tmp_path / "data"
    data.mkdir()
    source = data / "news.de"
    source.write_text("Ein Hund läuft.\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    given, output = source, out
    if spelling == "same-folder":
        output = data
    elif spelling == "symlink":
        (out / "news.de").symlink_to(source)
    elif spelling == "hardlink":
        os.link(source, out / "news.de")
    else:
        given, output = out / ".." / "data" / "news.de", data
    code = main(["translate", str(tiny_run), "--ray", "--input", str(given), "--output", str(output)])
    assert code == 2
    assert source.read_text(encoding="utf-8") == "Ein Hund läuft.\n"
    assert "nothing was changed" in capsys.readouterr().err
