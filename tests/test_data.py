"""Loading parallel corpora: formats, alignment checks and the errors users see."""

from __future__ import annotations

import gzip
import json
import logging
import time
from pathlib import Path

import datasets.config
import huggingface_hub.constants
import pytest

from seq2seq_rnn.config import DataConfig
from seq2seq_rnn.data import ParallelCorpus, filter_by_length, load_split
from seq2seq_rnn.errors import DataError

MULTI30K = Path(__file__).resolve().parents[1] / "data" / "multi30k"


def write(path: Path, text: str | bytes) -> Path:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def text_config(src: Path, tgt: Path, limit: int | None = None) -> DataConfig:
    split = {"source": str(src), "target": str(tgt), "limit": limit}
    return DataConfig(source_lang="de", target_lang="en", train=split, validation=split)


def file_config(fmt: str, path: Path, **extra) -> DataConfig:
    split = {"path": str(path)}
    return DataConfig(source_lang="de", target_lang="en", format=fmt, train=split, validation=split, **extra)


def text_pair(tmp_path: Path, src: str | bytes, tgt: str | bytes, suffix: str = ".txt") -> DataConfig:
    return text_config(write(tmp_path / f"s.de{suffix}", src), write(tmp_path / f"s.en{suffix}", tgt))


# -------------------------------------------------------------------- formats
@pytest.mark.parametrize("suffix", [".txt", ".gz"])
def test_text_plain_and_gzip(tmp_path, suffix):
    corpus = load_split(text_pair(tmp_path, "ein Hund\nzwei Katzen\n", "a dog\ntwo cats\n", suffix), "train")
    assert isinstance(corpus, ParallelCorpus)
    assert corpus.sources == ["ein Hund", "zwei Katzen"]
    assert corpus.targets == ["a dog", "two cats"]
    assert (len(corpus), corpus.dropped_empty, corpus.name) == (2, 0, "train")


def test_shipped_multi30k_is_aligned():
    split = {"source": str(MULTI30K / "val.de.gz"), "target": str(MULTI30K / "val.en.gz")}
    data = DataConfig(source_lang="de", target_lang="en", train=split, validation=split)
    corpus = load_split(data, "validation")
    assert len(corpus) == 1014 and corpus.dropped_empty == 0
    assert corpus.sources[0].startswith("Eine Gruppe von Männern")
    assert corpus.targets[0].startswith("A group of men")


def test_tsv(tmp_path):
    path = write(tmp_path / "pairs.tsv", 'ein "Hund"\ta "dog"\r\nzwei\ttwo\n\nnur\t\n')
    corpus = load_split(file_config("tsv", path), "train")
    assert corpus.sources == ['ein "Hund"', "zwei"]  # quotes are text, not CSV quoting
    assert corpus.targets == ['a "dog"', "two"]
    assert corpus.dropped_empty == 2


def test_tsv_wrong_column_count_names_line(tmp_path):
    path = write(tmp_path / "pairs.tsv", "a\tb\na\tb\tc\n")
    with pytest.raises(DataError, match=r"pairs\.tsv, line 2: expected 2 tab-separated columns.*found 3"):
        load_split(file_config("tsv", path), "train")


@pytest.mark.parametrize("nested", [False, True])
def test_jsonl_both_shapes(tmp_path, nested):
    rows = [{"de": "ein Hund", "en": "a dog", "id": 1}, {"de": "Haus", "en": "house"}]
    if nested:
        rows = [{"translation": r} for r in rows]
    path = write(tmp_path / "pairs.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n")
    corpus = load_split(file_config("jsonl", path), "train")
    assert corpus.sources == ["ein Hund", "Haus"]
    assert corpus.targets == ["a dog", "house"]


def test_jsonl_missing_key_names_line(tmp_path):
    path = write(tmp_path / "pairs.jsonl", '{"de": "a", "en": "b"}\n{"de": "c", "fr": "d"}\n')
    with pytest.raises(DataError, match=r"pairs\.jsonl, line 2: no 'en' text"):
        load_split(file_config("jsonl", path), "train")


def test_jsonl_invalid_json_names_line(tmp_path):
    path = write(tmp_path / "pairs.jsonl", '{"de": "a", "en": "b"}\n{"de": \n')
    with pytest.raises(DataError, match=r"pairs\.jsonl, line 2: invalid JSON"):
        load_split(file_config("jsonl", path), "train")


# ------------------------------------------------------------------ alignment
def test_mismatched_line_counts_name_both_files_and_counts(tmp_path):
    data = text_pair(tmp_path, "a\nb\nc\n", "x\ny\n")
    with pytest.raises(DataError) as info:
        load_split(data, "train")
    message = str(info.value)
    assert "3 in" in message and "2 in" in message
    assert str(tmp_path / "s.de.txt") in message and str(tmp_path / "s.en.txt") in message


def test_empty_pairs_dropped_and_counted(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="seq2seq_rnn.data.corpus"):
        corpus = load_split(text_pair(tmp_path, "a\n\nc\n   \ne\n", "A\nB\n\nD\nE\n"), "train")
    assert corpus.sources == ["a", "e"] and corpus.targets == ["A", "E"]
    assert corpus.dropped_empty == 3
    assert "dropped 3 of 5 pairs" in caplog.text


def test_windows_line_endings_and_lone_carriage_return(tmp_path):
    # a lone \r inside a line must not split it (that would misalign every later pair)
    corpus = load_split(text_pair(tmp_path, "a\r\nb\rb\r\nc\r\n", "A\nB\nC"), "train")
    assert corpus.sources == ["a", "b\rb", "c"]
    assert corpus.targets == ["A", "B", "C"]


def test_utf8_bom_is_removed(tmp_path):
    corpus = load_split(text_pair(tmp_path, "\ufeffa\nb\n", "A\nB\n"), "train")
    assert corpus.sources == ["a", "b"]


@pytest.mark.parametrize("suffix", [".txt", ".gz"])
def test_invalid_utf8_names_file_and_line(tmp_path, suffix):
    data = text_pair(tmp_path, b"ok\nalso ok\nbad \xff\xfe here\n", b"x\ny\nz\n", suffix)
    with pytest.raises(DataError, match=rf"s\.de{suffix}, line 3: invalid UTF-8"):
        load_split(data, "train")


def test_missing_file(tmp_path):
    write(tmp_path / "s.de.txt", "a\n")
    with pytest.raises(DataError, match=r"s\.en\.txt: no such file"):
        load_split(text_config(tmp_path / "s.de.txt", tmp_path / "s.en.txt"), "train")


def test_corrupt_gzip(tmp_path):
    (tmp_path / "s.de.gz").write_bytes(b"not gzip at all")
    write(tmp_path / "s.en.gz", "a\n")
    with pytest.raises(DataError, match=r"s\.de\.gz: cannot read"):
        load_split(text_config(tmp_path / "s.de.gz", tmp_path / "s.en.gz"), "train")


def test_empty_split(tmp_path):
    with pytest.raises(DataError, match="train split is empty"):
        load_split(text_pair(tmp_path, "\n \n", "a\nb\n"), "train")
    with pytest.raises(DataError, match="train split is empty"):
        load_split(text_pair(tmp_path, "", ""), "train")


def test_missing_test_split(tmp_path):
    with pytest.raises(DataError, match="no data.test split"):
        load_split(text_pair(tmp_path, "a\n", "b\n"), "test")


def test_very_long_line(tmp_path):
    long_line = "wort " * 20_000  # 100k characters
    corpus = load_split(text_pair(tmp_path, f"kurz\n{long_line}\n", "short\nlong\n"), "train")
    assert len(corpus) == 2 and len(corpus.sources[1]) == 100_000


def test_limit_applies_to_raw_lines_before_dropping_empties(tmp_path):
    src = write(tmp_path / "s.de.txt", "a\n\nc\nd\ne\n")
    tgt = write(tmp_path / "s.en.txt", "A\nB\nC\nD\nE\n")
    corpus = load_split(text_config(src, tgt, limit=3), "train")
    assert corpus.sources == ["a", "c"] and corpus.dropped_empty == 1


# ------------------------------------------------------------------------ hub
def test_hub_offline_fails_fast_with_data_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    flags = (datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE)
    data = DataConfig(
        source_lang="de",
        target_lang="en",
        format="hub",
        hub_name="someone/no-such-dataset-xyz",
        train={"split": "train"},
        validation={"split": "validation"},
    )
    start = time.monotonic()
    with pytest.raises(
        DataError, match=r"could not reach the Hugging Face hub for dataset someone/no-such-dataset-xyz"
    ):
        load_split(data, "train", cache_dir=tmp_path / "cache")
    assert time.monotonic() - start < 5
    assert (datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE) == flags  # restored


@pytest.mark.parametrize("nested", [False, True])
def test_hub_format_reads_translation_or_language_columns(tmp_path, monkeypatch, nested):
    """A local folder stands in for a hub repository (same load_dataset code path)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = tmp_path / "repo"
    repo.mkdir()
    rows = [{"de": "ein Hund", "en": "a dog"}, {"de": "", "en": "empty"}, {"de": "Haus", "en": "house"}]
    rows = [{"translation": r} for r in rows] if nested else rows
    write(repo / "train.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    data = DataConfig(
        source_lang="de",
        target_lang="en",
        format="hub",
        hub_name=str(repo),
        train={"split": "train"},
        validation={"split": "train"},
    )
    corpus = load_split(data, "train", cache_dir=tmp_path / "cache")
    assert corpus.sources == ["ein Hund", "Haus"] and corpus.targets == ["a dog", "house"]
    assert corpus.dropped_empty == 1


def test_hub_format_wrong_columns(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = tmp_path / "repo"
    repo.mkdir()
    write(repo / "train.jsonl", '{"text": "a"}\n')
    data = DataConfig(
        source_lang="de", target_lang="en", format="hub", hub_name=str(repo), train={"split": "train"},
        validation={"split": "train"},
    )  # fmt: skip
    with pytest.raises(DataError, match="found columns text"):
        load_split(data, "train")


# ---------------------------------------------------------------- filtering
def test_filter_by_length():
    src = [[1] * 3, [1] * 5, [1] * 2, []]
    tgt = [[1] * 3, [1] * 2, [1] * 6, [1]]
    kept, dropped = filter_by_length(src, tgt, max_length=4)
    assert kept == [0, 3] and dropped == 2
    assert filter_by_length(src, tgt, max_length=6) == ([0, 1, 2, 3], 0)


# ------------------------------------------ every format, the same pairs, via Arrow
PAIRS = [("ein Hund", "a dog"), ("", "empty"), ("zwei Katzen", "two cats"), ("Haus", "house")]


def _format_configs(tmp_path: Path) -> dict[str, DataConfig]:
    """The same four raw pairs in each supported layout."""
    datasets.disable_progress_bars()
    rows = [{"de": s, "en": t} for s, t in PAIRS]
    nested = [{"translation": r} for r in rows]
    configs = {
        "text": text_pair(tmp_path, "".join(s + "\n" for s, _ in PAIRS), "".join(t + "\n" for _, t in PAIRS)),
        "gzip": text_pair(tmp_path, "".join(s + "\n" for s, _ in PAIRS), "".join(t + "\n" for _, t in PAIRS), ".gz"),
        "tsv": file_config("tsv", write(tmp_path / "p.tsv", "".join(f"{s}\t{t}\n" for s, t in PAIRS))),
        "jsonl": file_config("jsonl", write(tmp_path / "p.jsonl", "".join(json.dumps(r) + "\n" for r in rows))),
    }
    table = datasets.Dataset.from_list(rows)
    table.to_parquet(str(tmp_path / "p.parquet"))
    configs["parquet"] = file_config("parquet", tmp_path / "p.parquet")
    (tmp_path / "pq").mkdir()  # a folder of parquet shards, read in name order
    table.select(range(2)).to_parquet(str(tmp_path / "pq" / "part-0.parquet"))
    table.select(range(2, 4)).to_parquet(str(tmp_path / "pq" / "part-1.parquet"))
    configs["parquet folder"] = file_config("parquet", tmp_path / "pq")
    datasets.DatasetDict({"train": datasets.Dataset.from_list(nested), "validation": table}).save_to_disk(
        str(tmp_path / "saved")
    )
    table.save_to_disk(str(tmp_path / "saved_one"))
    (tmp_path / "hubrepo").mkdir()
    write(tmp_path / "hubrepo" / "train.jsonl", "".join(json.dumps(r) + "\n" for r in nested))
    for name, folder in (("save_to_disk", "saved"), ("save_to_disk dataset", "saved_one"), ("hub layout", "hubrepo")):
        configs[name] = DataConfig(
            source_lang="de", target_lang="en", format="hub", hub_name=str(tmp_path / folder),
            train={"split": "train"}, validation={"split": "train"},
        )  # fmt: skip
    return configs


def test_every_format_loads_the_same_pairs_as_memory_mapped_arrow(tmp_path, monkeypatch):
    from seq2seq_rnn.data import load_split_table

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name, data in _format_configs(tmp_path).items():
        table = load_split_table(data, "train", tmp_path / "cache")
        assert table.dataset.cache_files, f"{name}: not backed by an Arrow file"
        assert str(tmp_path / "cache") in table.dataset.cache_files[0]["filename"]
        corpus = table.to_corpus()
        assert list(zip(corpus.sources, corpus.targets, strict=True)) == [p for p in PAIRS if p[0]], name
        assert (table.raw_pairs, table.dropped_empty) == (4, 1), name


def test_a_changed_file_is_read_again_and_an_unchanged_one_is_not(tmp_path, monkeypatch):
    from seq2seq_rnn.data import corpus as corpus_module

    data = text_pair(tmp_path, "a\nb\n", "A\nB\n")
    assert load_split(data, "train", tmp_path / "cache").sources == ["a", "b"]
    monkeypatch.setattr(corpus_module, "_write_pairs", lambda *a: pytest.fail("read again"))
    assert load_split(data, "train", tmp_path / "cache").sources == ["a", "b"]  # from the cache
    monkeypatch.undo()
    write(tmp_path / "s.de.txt", "a\nc\n")
    write(tmp_path / "s.en.txt", "A\nC\n")
    assert load_split(data, "train", tmp_path / "cache").sources == ["a", "c"]


def test_relative_hub_folder_resolves_against_the_recipe(tmp_path):
    from seq2seq_rnn.config import load_recipe

    datasets.Dataset.from_list([{"de": "a", "en": "b"}]).save_to_disk(str(tmp_path / "corpus"))
    (tmp_path / "r.yaml").write_text(
        "data: {source_lang: de, target_lang: en, format: hub, hub_name: corpus, "
        "train: {split: train}, validation: {split: train}}\n"
    )
    recipe = load_recipe(tmp_path / "r.yaml")
    assert recipe.data.hub_name == str(tmp_path / "corpus")
    assert load_split(recipe.data, "train", tmp_path / "cache").sources == ["a"]
