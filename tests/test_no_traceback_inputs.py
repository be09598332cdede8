"""Hostile inputs that must end in one message, never a traceback (issue 21, class 7).

A closed stdout, ``evaluate`` of empty files, control characters in a recipe or a
``--set`` value, a ``metrics.jsonl`` that is a folder, ``translate --ray --output``
naming a file, a ``scores.json`` of the wrong shape, a FIFO or device given as data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from seq2seq_rnn.config import DataConfig, load_recipe
from seq2seq_rnn.data import load_split
from seq2seq_rnn.errors import ConfigError, DataError
from tests.helpers import ROOT, TINY, cli_env, run_cli, small_overrides


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr[-3000:]


@pytest.fixture
def run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("*.lock"))
    return copy


# ------------------------------------------------------------------ stdout
def test_translate_into_a_pipe_closed_early_ends_quietly(tiny_run, tmp_path):
    lines = "".join(f"Ein Hund läuft {i}.\n" for i in range(300))
    (tmp_path / "in.txt").write_text(lines, encoding="utf-8")
    script = (
        f"{sys.executable} -m seq2seq_rnn.cli translate {tiny_run} --batch-size 1 < {tmp_path / 'in.txt'} "
        f"2> {tmp_path / 'err'} | head -1; echo ${{PIPESTATUS[0]}} > {tmp_path / 'rc'}"
    )
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=ROOT, env=cli_env(), timeout=300)
    assert len(done.stdout.splitlines()) == 1
    err = (tmp_path / "err").read_text()
    assert "Traceback" not in err and "Exception ignored" not in err and "BrokenPipe" not in err, err
    assert (tmp_path / "rc").read_text().strip() == "0"


def test_translate_with_stdout_closed_says_so(tiny_run):
    script = f"echo 'Ein Hund.' | {sys.executable} -m seq2seq_rnn.cli translate {tiny_run} >&-"
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=ROOT, env=cli_env(), timeout=300)
    no_traceback(done)
    assert done.returncode == 2 and "standard output" in done.stderr, done.stderr[-2000:]


# --------------------------------------------------------------- evaluate
@pytest.mark.parametrize("content", ["", "\n\n"], ids=["empty", "blank-lines"])
def test_evaluate_of_empty_files_is_a_message(tiny_run, tmp_path, content):
    (tmp_path / "src").write_text(content)
    (tmp_path / "ref").write_text(content)
    proc = run_cli("evaluate", tiny_run, "--src", tmp_path / "src", "--ref", tmp_path / "ref")
    no_traceback(proc)
    assert proc.returncode == 2 and "nothing to score" in proc.stderr, proc.stderr[-2000:]


# ------------------------------------------------------ control characters
CONTROLS = ["\x00", "\x01", "\x07", "\x1b[2J", "\x7f", "\x85x\x9b"]


@pytest.mark.parametrize("char", CONTROLS, ids=[f"{ord(c[0]):#04x}" for c in CONTROLS])
def test_control_characters_in_a_set_value_are_a_config_error(char):
    with pytest.raises(ConfigError, match="control character"):
        load_recipe(TINY, [f"name=a{char}b"])


@pytest.mark.parametrize("char", CONTROLS, ids=[f"{ord(c[0]):#04x}" for c in CONTROLS])
def test_control_characters_in_a_recipe_file_are_a_config_error(tmp_path, char):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(TINY.read_text(encoding="utf-8") + f"\n# note{char}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"r\.yaml.*control character"):
        load_recipe(recipe)


def test_the_cli_reports_a_control_character_in_set_without_a_traceback(tmp_path):
    proc = run_cli("train", TINY, "--output-dir", tmp_path / "run", "--set", "model.encoder.cell=gr\x1bu")
    no_traceback(proc)
    assert proc.returncode == 2 and "control character" in proc.stderr
    assert "\x1b" not in proc.stderr  # never echoed raw to the terminal
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------- run files
def test_a_metrics_file_that_is_a_folder_is_refused_before_training(run_copy):
    (run_copy / "metrics.jsonl").unlink()
    (run_copy / "metrics.jsonl").mkdir()
    proc = run_cli(
        "train", TINY, "--resume", "--output-dir", run_copy, "--no-test", *small_overrides(train__max_steps=30)
    )
    no_traceback(proc)
    assert proc.returncode == 2 and "metrics.jsonl" in proc.stderr and "folder" in proc.stderr, proc.stderr[-2000:]
    plot = run_cli("plot", run_copy)
    no_traceback(plot)
    assert plot.returncode == 2 and "metrics.jsonl" in plot.stderr and "folder" in plot.stderr, plot.stderr[-2000:]


def test_translate_ray_output_naming_a_file_is_refused_before_ray_starts(tiny_run, tmp_path):
    (tmp_path / "in.txt").write_text("Ein Hund.\n")
    out = tmp_path / "out.txt"
    out.write_text("keep me\n")
    proc = run_cli("translate", tiny_run, "--ray", "--input", tmp_path / "in.txt", "--output", out, timeout=120)
    no_traceback(proc)
    assert proc.returncode == 2 and "--output" in proc.stderr and "file" in proc.stderr, proc.stderr[-2000:]
    assert out.read_text() == "keep me\n"


BAD_SCORES = [
    [1, 2],
    "a string",
    {"x": 5},
    {"x": {"bleu": None, "chrf": 1.0}},
    {"x": {"bleu": "high", "chrf": "low"}},
    {"x": {"chrf": 3.0}},
    {"x": {"bleu": 1.0, "chrf": 2.0, "checkpoint": {"a": 1}, "n": [1]}},
]


@pytest.mark.parametrize("scores", BAD_SCORES, ids=range(len(BAD_SCORES)))
def test_a_model_card_is_written_whatever_scores_json_holds(run_copy, scores):
    from seq2seq_rnn.run.modelcard import write_model_card

    (run_copy / "scores.json").write_text(json.dumps(scores), encoding="utf-8")
    card = write_model_card(run_copy).read_text(encoding="utf-8")
    assert "## Scores" in card


def test_training_with_a_wrongly_shaped_scores_json_finishes_with_its_model_card(run_copy):
    (run_copy / "scores.json").write_text(json.dumps({"x": 5, "y": {"bleu": None}}), encoding="utf-8")
    before = (run_copy / "README.md").read_text(encoding="utf-8")
    proc = run_cli(
        "train", TINY, "--resume", "--output-dir", run_copy, "--no-test", *small_overrides(train__max_steps=22)
    )
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "could not" not in proc.stderr.lower() or "model card" not in proc.stderr.lower(), proc.stderr[-2000:]
    after = (run_copy / "README.md").read_text(encoding="utf-8")
    assert after != before and "22" in after


# ------------------------------------------------------- special files
def _text_split(src: Path, tgt: Path) -> DataConfig:
    split = {"source": str(src), "target": str(tgt)}
    return DataConfig(source_lang="de", target_lang="en", train=split, validation=split)


def test_a_fifo_given_as_data_is_named_as_one(tmp_path):
    fifo = tmp_path / "pipe.de"
    os.mkfifo(fifo)
    (tmp_path / "t.en").write_text("a dog\n")
    with pytest.raises(DataError, match="named pipe"):  # and it must not hang waiting for a writer
        load_split(_text_split(fifo, tmp_path / "t.en"), "train", tmp_path / "cache")


@pytest.mark.parametrize("device", ["/dev/null", "/dev/zero"])
def test_a_device_given_as_data_is_named_as_one(tmp_path, device):
    (tmp_path / "t.en").write_text("a dog\n")
    with pytest.raises(DataError, match="character device"):
        load_split(_text_split(Path(device), tmp_path / "t.en"), "train", tmp_path / "cache")


def test_evaluate_with_a_fifo_as_reference_is_a_message(tiny_run, tmp_path):
    fifo = tmp_path / "ref.fifo"
    os.mkfifo(fifo)
    (tmp_path / "src").write_text("Ein Hund.\n")
    proc = run_cli("evaluate", tiny_run, "--src", tmp_path / "src", "--ref", fifo, timeout=120)
    no_traceback(proc)
    assert proc.returncode == 2 and "named pipe" in proc.stderr, proc.stderr[-2000:]


def test_a_nul_character_in_a_data_path_is_a_config_error():
    with pytest.raises(ConfigError, match=r"data\.train\.source: .* NUL"):
        load_recipe(TINY, ['data.train.source="a\\x00b"'])


def test_control_characters_echoed_in_an_error_are_escaped(tiny_run, tmp_path):
    (tmp_path / "ref").write_text("a\n")
    proc = run_cli("evaluate", tiny_run, "--src", tmp_path / "a\x1b]0;pwned\x07b", "--ref", tmp_path / "ref")
    no_traceback(proc)
    assert proc.returncode == 2 and "\\x1b]0;pwned\\x07b" in proc.stderr, proc.stderr[-2000:]
    assert "\x1b" not in proc.stderr and "\x07" not in proc.stderr
