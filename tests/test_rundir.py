"""A run directory is claimed by a marker, written by one process at a time, and a folder
that is not a run of ours is never touched (issue #10, classes 1, 2 and 7)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from seq2seq_rnn.cli import main
from seq2seq_rnn.config import load_recipe
from seq2seq_rnn.errors import RunDirError
from seq2seq_rnn.run.directory import LOCK_NAME, MARKER_NAME, RUN_FORMAT_VERSION, RunDir
from seq2seq_rnn.training import Trainer
from tests.helpers import ROOT, TINY, cli_env, small_overrides

SETTINGS = small_overrides(train__max_steps=4, train__validate_every=2, train__log_every=1)


def snapshot(folder: Path) -> dict[str, tuple[bytes | None, int]]:
    """Every path under ``folder`` with its bytes (None for folders) and mtime."""
    out: dict[str, tuple[bytes | None, int]] = {}
    for path in sorted(folder.rglob("*")):
        content = path.read_bytes() if path.is_file() else None
        out[str(path.relative_to(folder))] = (content, path.stat().st_mtime_ns)
    return out


def hold_lock(run: Path, fork_child: bool = False) -> subprocess.Popen[str]:
    """Another process that holds ``run``'s writer lock until killed (optionally with a forked child
    that outlives it, as a data worker of a killed trainer may)."""
    code = (
        "import os, sys, time; from pathlib import Path; from seq2seq_rnn.run.directory import RunDir\n"
        "run = RunDir(Path(sys.argv[1])); run.claim(); held = run.lock('test holder'); held.__enter__()\n"
        "child = os.fork() if sys.argv[2] == '1' else -1\n"
        "if child == 0: time.sleep(60); os._exit(0)\n"
        "print('locked', child, flush=True); time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(run), "1" if fork_child else "0"],
        cwd=ROOT,
        env=cli_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    assert line[0] == "locked"
    proc.child_pid = int(line[1])  # type: ignore[attr-defined]
    return proc


# ------------------------------------------------------------ class 1: the marker
def test_a_foreign_folder_is_refused_and_nothing_in_it_changes(tmp_path, capsys):
    """Today train overwrote README.md/recipe.yaml, deleted tokenizer/ and *.tmp, appended to the logs."""
    folder = tmp_path / "project"
    (folder / "tokenizer").mkdir(parents=True)
    (folder / "tokenizer" / "mine.model").write_text("a user's file")
    for name in ("README.md", "recipe.yaml", "metrics.jsonl", "train.log", ".notes.tmp"):
        (folder / name).write_text(f"the user's {name}\n")
    before = snapshot(folder)
    assert main(["train", str(TINY), "--output-dir", str(folder), *SETTINGS]) == 2
    err = capsys.readouterr().err
    assert str(folder) in err and "not a seq2seq_rnn run directory" in err and "--output-dir" in err
    assert "Nothing in it was changed" in err and "Traceback" not in err
    assert snapshot(folder) == before
    with pytest.raises(RunDirError):  # the library refuses it too, not only the CLI
        Trainer(load_recipe(TINY, SETTINGS[1::2]), folder).fit()
    assert snapshot(folder) == before


def test_the_marker_is_written_first_with_its_format_version(tmp_path):
    run = RunDir(tmp_path / "new" / "run")
    run.claim()
    assert [p.name for p in run.path.iterdir()] == [MARKER_NAME]
    marker = json.loads(run.marker.read_text(encoding="utf-8"))
    assert marker["format_version"] == RUN_FORMAT_VERSION
    run.claim()  # a marked folder is ours: claiming again changes nothing
    assert json.loads(run.marker.read_text(encoding="utf-8")) == marker
    empty = RunDir(tmp_path / "empty")
    empty.path.mkdir()
    empty.claim()
    assert empty.marker.is_file()


def test_a_newer_run_format_is_refused(tmp_path):
    run = RunDir(tmp_path / "run")
    run.claim()
    run.marker.write_text(json.dumps({"format_version": RUN_FORMAT_VERSION + 1}))
    with pytest.raises(RunDirError, match="newer than this seq2seq_rnn"):
        run.claim()


def test_a_start_killed_before_its_first_checkpoint_is_cleaned_of_our_files_only(tmp_path):
    """Its metrics rows are not repeated (no duplicate steps) and a user's own file stays."""
    run = RunDir(tmp_path / "run")
    run.claim()  # what the killed start left: marker, recipe, tokenizer, metrics, a best.pt, no last.pt
    run.begin_start()  # ... and its start record, written before any of them (issue 21: without one, refused)
    (run.path / "tokenizer").mkdir()
    (run.path / "tokenizer" / "spm.model").write_bytes(b"half-written")
    run.metrics.write_text("".join(json.dumps({"step": s, "loss": 9.0}) + "\n" for s in (1, 2, 3)))
    run.checkpoints.mkdir()
    run.best.write_bytes(b"from the killed start")
    (run.path / "notes.txt").write_text("the user's notes")
    assert main(["train", str(TINY), "--output-dir", str(run.path), "--no-test", *SETTINGS]) == 0
    rows = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    train_steps = [r["step"] for r in rows if "loss" in r]
    assert train_steps == [1, 2, 3, 4] and all(r.get("loss") != 9.0 for r in rows)
    assert (run.path / "notes.txt").read_text() == "the user's notes"
    assert run.has_training_state()


# ------------------------------------------------------------ class 2: one writer
def test_a_second_writer_fails_at_once_naming_the_holder_and_kill_9_frees_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    holder = hold_lock(run, fork_child=True)
    try:
        assert main(["train", str(TINY), "--output-dir", str(run), *SETTINGS]) == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and "in use by another process" in err and str(run) in err
        assert not (run / "recipe.yaml").exists() and not (run / "tokenizer").exists()
        assert main(["average", str(run), "--last", "1"]) == 2
        assert f"pid {holder.pid}" in capsys.readouterr().err
        assert main(["evaluate", str(run), "--split", "validation"]) == 2
        assert f"pid {holder.pid}" in capsys.readouterr().err
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    try:  # the kernel released it with the process, though its forked child still runs
        os.kill(holder.child_pid, 0)  # type: ignore[attr-defined]
        with RunDir(run).lock("after the holder died"):
            assert f"pid {os.getpid()}" in (run / LOCK_NAME).read_text()
    finally:
        os.kill(holder.child_pid, signal.SIGKILL)  # type: ignore[attr-defined]


def test_the_lock_is_reentrant_within_one_process(tmp_path):
    run = RunDir(tmp_path / "run")
    run.claim()
    with run.lock("outer"), run.lock("inner"):
        pass
    with run.lock("again"):  # released after the outer block
        pass


def test_the_ray_driver_takes_the_lock_before_starting_ray(tmp_path):
    pytest.importorskip("ray")
    from seq2seq_rnn.integrations.ray import train_distributed

    run = tmp_path / "run"
    holder = hold_lock(run)
    try:
        with pytest.raises(RunDirError, match=f"pid {holder.pid}"):
            train_distributed(load_recipe(TINY, SETTINGS[1::2]), run, workers=2)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert not (run / "recipe.yaml").exists()


# ------------------------------------------------------------ class 7: data edge cases
def test_resume_into_a_folder_without_a_run_says_so(tmp_path, capsys):
    for folder in (tmp_path / "missing", tmp_path / "empty"):
        if folder.name == "empty":
            folder.mkdir()
        assert main(["train", str(TINY), "--output-dir", str(folder), "--resume", *SETTINGS]) == 2
        err = capsys.readouterr().err
        assert "holds no run to resume" in err and str(folder) in err
    assert not (tmp_path / "missing").exists() and not any((tmp_path / "empty").iterdir())


def test_a_folder_given_as_a_data_file_says_so(tmp_path, capsys):
    folder = tmp_path / "corpus"
    folder.mkdir()
    args = ["train", str(TINY), "--output-dir", str(tmp_path / "run"), *SETTINGS]
    assert main([*args, "--set", f"data.train.source={folder}"]) == 2
    err = capsys.readouterr().err
    assert f"{folder} is a folder, not a file" in err and "no such file" not in err


def test_the_same_file_as_source_and_target_is_an_error(tmp_path, capsys):
    recipe = load_recipe(TINY)
    source = recipe.data.train.source
    args = ["train", str(TINY), "--output-dir", str(tmp_path / "run"), *SETTINGS]
    assert main([*args, "--set", f"data.train.target={source}"]) == 2
    assert "same file" in capsys.readouterr().err
    link = tmp_path / "link.gz"  # another spelling of the same file is caught when reading
    link.symlink_to(str(source))
    assert main([*args, "--set", f"data.train.target={link}"]) == 2
    assert "both source and target" in capsys.readouterr().err


def test_evaluate_refuses_the_same_file_as_src_and_ref_and_a_folder(tiny_run, tmp_path, capsys):
    src = tmp_path / "src.txt"
    src.write_text("Ein Hund.\n")
    run = tmp_path / "run"
    import shutil

    shutil.copytree(tiny_run, run)
    assert main(["evaluate", str(run), "--src", str(src), "--ref", str(src)]) == 2
    assert "both --src and --ref" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--src", str(src), "--ref", str(tmp_path)]) == 2
    assert "is a folder, not a file" in capsys.readouterr().err


# ------------------------------------------------------------ class 4: CLI numbers
@pytest.mark.parametrize(
    "args",
    [
        ["translate", "RUN", "--beam-size", "0"],
        ["translate", "RUN", "--beam-size", "-1"],
        ["translate", "RUN", "--batch-size", "0"],
        ["evaluate", "RUN", "--beam-size", "-3"],
        ["average", "RUN", "--last", "0"],
        ["average", "RUN", "--last", "-1"],
        ["translate", "RUN", "--beam-size", "two"],
    ],
    ids=lambda a: " ".join(a[::2] + a[1::2]),
)
def test_cli_counts_below_one_are_refused_by_argparse(args, tmp_path, capsys):
    """Today 0 was silently replaced by the default and -1 gave a traceback or averaged the wrong files."""
    args = [str(tmp_path) if a == "RUN" else a for a in args]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "at least 1" in err or "whole number" in err
    assert "Traceback" not in err


def test_a_beam_wider_than_the_vocabulary_is_refused(tiny_run, capsys):
    from seq2seq_rnn import Translator

    translator = Translator.load(tiny_run, device="cpu")
    vocab = translator.tokenizer.target_vocab_size
    with pytest.raises(Exception, match="larger than the target vocabulary"):
        translator.translate(["Ein Hund."], beam_size=vocab + 1)
    assert len(translator.translate(["Ein Hund."], beam_size=vocab)) == 1  # as wide as the vocabulary is fine


def test_a_large_valid_beam_decodes_in_smaller_batches(tiny_run, monkeypatch):
    """batch × beam stays under the cap: the sentence batch shrinks instead of the run dying."""
    from seq2seq_rnn import Translator
    from seq2seq_rnn.inference import decoding

    translator = Translator.load(tiny_run, device="cpu")
    beam = 8
    monkeypatch.setattr(decoding, "MAX_BEAM_ROWS", 3 * beam)  # room for 3 sentences
    rows: list[int] = []
    search = decoding.beam_search

    def spy(model, src, *args, **kwargs):  # type: ignore[no-untyped-def]
        rows.append(src.size(0))
        return search(model, src, *args, **kwargs)

    monkeypatch.setattr(decoding, "beam_search", spy)
    sentences = [f"Ein Hund läuft {i} Mal." for i in range(10)]
    out = translator.translate(sentences, beam_size=beam, batch_size=1_000_000)
    assert len(out) == 10 and rows and max(rows) <= 3 and sum(rows) == 10
