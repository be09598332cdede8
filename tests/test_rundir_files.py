"""The run directory owns its files: one metrics.jsonl reader (a cut-off last line is
skipped), data counts as JSON for the model card, one line reader for data files,
and the defaults that used to be hidden in code as recipe fields."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from seq2seq_rnn.config import load_recipe
from seq2seq_rnn.data.corpus import read_lines
from seq2seq_rnn.errors import CheckpointError
from seq2seq_rnn.evaluate import evaluate_files
from seq2seq_rnn.inference.translator import Translator
from seq2seq_rnn.run.directory import RunDir, read_metrics
from seq2seq_rnn.run.modelcard import model_card
from seq2seq_rnn.training import truncate_metrics
from tests.helpers import TINY

ROWS = [{"step": 5, "loss": 3.0}, {"step": 10, "loss": 2.5, "val_bleu": 1.0}, {"step": 15, "loss": 2.0}]


def write_metrics(path: Path, tail: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS) + tail, encoding="utf-8")
    return path


@pytest.mark.parametrize("tail", ['{"step": 20, "lo', '{"step": 20, "lo\n', "\n\n"])
def test_a_cut_off_last_line_is_skipped(tmp_path: Path, tail: str) -> None:
    assert read_metrics(write_metrics(tmp_path / "metrics.jsonl", tail)) == ROWS


def test_a_bad_line_in_the_middle_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 5}\nnot json\n{"step": 10}\n', encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"metrics\.jsonl:2: not a JSON line"):
        read_metrics(path)
    assert read_metrics(tmp_path / "missing.jsonl") == []


def test_resume_truncation_uses_the_same_reader(tmp_path: Path) -> None:
    path = write_metrics(tmp_path / "metrics.jsonl", '{"step": 20, "lo')
    truncate_metrics(path, 10)
    assert read_metrics(path) == ROWS[:2]
    assert path.read_text(encoding="utf-8").endswith("}\n")


def test_plot_and_model_card_read_a_run_whose_last_metrics_line_was_cut(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    full = RunDir(run).read_metrics()
    with (run / "metrics.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"step": 99, "loss": 1.')  # a kill mid-write
    assert RunDir(run).read_metrics(required=True) == full
    card = model_card(run)  # raised JSONDecodeError before
    assert "## Training" in card and "step 99" not in card


def test_data_counts_are_json_in_the_run_dir(tiny_run: Path, tmp_path: Path) -> None:
    counts = RunDir(tiny_run).read_data_counts()
    assert counts["train_pairs"] == 300 and counts["validation_pairs"] == 20
    assert counts["train_kept"] + counts["train_dropped"] == 300
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "train.log").unlink()  # the card no longer parses the log
    assert "as loaded: 300 training pairs" in model_card(run)
    (run / "data.json").write_text(json.dumps({**counts, "train_pairs": 1234}), encoding="utf-8")
    assert "as loaded: 1,234 training pairs" in model_card(run)


def test_evaluate_reads_gzip_and_drops_a_bom_like_the_corpus_reader(tiny_run: Path, tmp_path: Path) -> None:
    sources = ["Ein Hund läuft.", "Zwei Männer."]
    refs = ["A dog runs.", "Two men."]
    src = tmp_path / "src.de.gz"
    with gzip.open(src, "wt", encoding="utf-8") as f:
        f.write("\ufeff" + "\n".join(sources) + "\n")
    ref = tmp_path / "ref.en"
    ref.write_bytes(("\ufeff" + "\r\n".join(refs) + "\r\n").encode("utf-8"))
    assert read_lines(src) == sources and read_lines(ref) == refs
    translator = Translator.load(tiny_run, device="cpu")
    scores, hyps = evaluate_files(translator, src, ref, beam_size=1)
    assert hyps == translator.translate(sources, beam_size=1)  # the BOM did not reach the model
    assert scores.n == 2


def test_hidden_defaults_are_recipe_fields() -> None:
    recipe = load_recipe(TINY)
    assert recipe.train.validation_batch_size == 64
    assert recipe.decode.max_source_length is None
    assert recipe.max_source_length == 2 * recipe.data.max_length
    recipe = load_recipe(TINY, ["decode.max_source_length=7", "train.validation_batch_size=3"])
    assert recipe.max_source_length == 7 and recipe.train.validation_batch_size == 3
