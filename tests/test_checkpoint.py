"""Checkpoints and run directories: bad files are refused with a message, writes are atomic,
and loading never unpickles arbitrary objects."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from seq2seq_rnn import Translator
from seq2seq_rnn.cli import main
from seq2seq_rnn.errors import CheckpointError
from seq2seq_rnn.run.checkpoint import FORMAT_VERSION, load_checkpoint, remove_stale_temporaries, save_checkpoint


@pytest.fixture
def run(tiny_run: Path, tmp_path: Path) -> Path:
    """A private copy of the session's tiny run, free to damage."""
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


def refused_by_cli(run: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    assert main(["translate", str(run), "--device", "cpu", *extra]) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and err.startswith("error: ") and out == ""
    return err


def test_the_intact_run_loads(run):
    assert len(Translator.load(run, device="cpu").translate(["ein Hund"], beam_size=1)) == 1


# ------------------------------------------------------------- bad files
def test_truncated_checkpoint_is_refused(run, capsys, cli):
    best = run / "checkpoints" / "best.pt"
    best.write_bytes(best.read_bytes()[: best.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint .truncated, corrupt"):
        Translator.load(run, device="cpu")
    assert "best.pt is not a readable checkpoint" in refused_by_cli(run, capsys)
    proc = cli("translate", run, "--device", "cpu", stdin=b"ein Hund\n")  # the real command, once
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "best.pt is not a readable checkpoint" in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("damage", ["flip-bytes", "garbage", "empty"])
def test_corrupted_checkpoint_is_refused(run, capsys, damage):
    last = run / "checkpoints" / "last.pt"
    raw = bytearray(last.read_bytes())
    if damage == "flip-bytes":
        for i in range(len(raw) // 3, len(raw) // 3 + 64):
            raw[i] ^= 0xFF
    elif damage == "garbage":
        raw = bytearray(os.urandom(4096))
    else:
        raw = bytearray()
    last.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="last.pt"):
        Translator.load(run, "last", device="cpu")
    refused_by_cli(run, capsys, "--checkpoint", "last")


def test_not_a_seq2seq_checkpoint(run, tmp_path):
    other = tmp_path / "other.pt"
    torch.save([torch.zeros(2)], other)
    with pytest.raises(CheckpointError, match="is not a seq2seq_rnn checkpoint"):
        Translator.load(run, str(other), device="cpu")
    torch.save({"format_version": FORMAT_VERSION, "weights": {}}, other)
    with pytest.raises(CheckpointError, match="no model weights"):
        load_checkpoint(other)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        Translator.load(run, str(tmp_path / "missing.pt"), device="cpu")


def test_newer_format_version_is_refused(run, capsys):
    best = run / "checkpoints" / "best.pt"
    payload = torch.load(best, weights_only=True)
    torch.save({**payload, "format_version": FORMAT_VERSION + 1}, best)
    with pytest.raises(CheckpointError, match="newer than this seq2seq_rnn understands .*upgrade"):
        Translator.load(run, device="cpu")
    assert f"format {FORMAT_VERSION + 1}" in refused_by_cli(run, capsys)


@pytest.mark.parametrize(
    "change",
    [{"hidden_size": 24, "embedding_size": 24}, {"cell": "gru"}],
    ids=["other-sizes", "other-cell"],
)
def test_checkpoint_of_another_model_shape_is_refused(run, capsys, change):
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["model"]["encoder"].update(change)
    recipe["model"]["decoder"].update(change)
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    with pytest.raises(CheckpointError, match="does not fit this model"):
        Translator.load(run, device="cpu")
    assert "does not fit this model" in refused_by_cli(run, capsys)


def test_run_directory_without_tokenizer_or_recipe(run, capsys):
    shutil.rmtree(run / "tokenizer")
    with pytest.raises(CheckpointError, match="no tokenizer found"):
        Translator.load(run, device="cpu")
    assert "no tokenizer found" in refused_by_cli(run, capsys)
    (run / "recipe.yaml").unlink()
    assert "is not a run directory (no recipe.yaml)" in refused_by_cli(run, capsys)


def test_corrupt_tokenizer_is_refused(run, capsys):
    (run / "tokenizer" / "spm.model").write_bytes(b"\x00not a sentencepiece model")
    assert "cannot load the sentencepiece model" in refused_by_cli(run, capsys)


# ------------------------------------------------- no arbitrary unpickling
class WritesAFile:
    """Unpickling this object calls Path.write_text: arbitrary code a checkpoint could smuggle in."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran while loading a checkpoint"))


def test_a_checkpoint_holding_a_pickled_object_never_runs_its_code(run, tmp_path, capsys):
    marker = tmp_path / "pwned"
    best = run / "checkpoints" / "best.pt"
    weights = torch.load(best, weights_only=True)
    torch.save({**weights, "extra": WritesAFile(marker)}, best)

    with pytest.raises(CheckpointError, match="never unpickled"):
        load_checkpoint(best)
    with pytest.raises(CheckpointError):
        Translator.load(run, device="cpu")
    refused_by_cli(run, capsys)
    assert not marker.exists(), "loading a checkpoint ran code from it"

    torch.load(best, weights_only=False)  # the payload is live: a plain unpickler does run it
    assert marker.exists()


# ------------------------------------------------------------ atomic saves
def payload() -> dict[str, object]:
    return {"model": {"w": torch.arange(6.0)}}


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_save_and_load_round_trip(tmp_path):
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint(path, payload())
    loaded = load_checkpoint(path)
    assert loaded["format_version"] == FORMAT_VERSION and torch.equal(loaded["model"]["w"], torch.arange(6.0))
    assert leftovers(path.parent) == []


def test_a_payload_that_cannot_be_saved_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, payload())
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="cannot write checkpoint .*last.pt.*is intact"):
        save_checkpoint(path, {**payload(), "bad": lambda: None})  # lambdas cannot be pickled
    assert path.read_bytes() == before and leftovers(tmp_path) == []


def test_a_full_disk_mid_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, payload())
    before = path.read_bytes()

    def half_then_full(obj, handle, *args, **kwargs):
        handle.write(before[: len(before) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", half_then_full)
    with pytest.raises(CheckpointError, match="the disk is full"):
        save_checkpoint(path, payload())
    assert path.read_bytes() == before and leftovers(tmp_path) == []
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.arange(6.0))


def test_an_unwritable_checkpoint_folder_is_a_checkpoint_error(tmp_path):
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(CheckpointError, match="cannot write checkpoint"):
        save_checkpoint(tmp_path / "file" / "last.pt", payload())


def test_temporaries_left_by_a_killed_writer_are_removed(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, payload())
    (tmp_path / ".last.pt.123.abcd.tmp").write_bytes(b"half a checkpoint")
    assert remove_stale_temporaries(tmp_path) == 1
    assert leftovers(tmp_path) == [] and path.is_file()
