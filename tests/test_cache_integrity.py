"""The data cache never serves stale or damaged data, and says when its folder cannot work (issue 21, class 5)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seq2seq_rnn.config import DataConfig
from seq2seq_rnn.data import load_split
from seq2seq_rnn.data.cache import cached
from seq2seq_rnn.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


def pair(tmp_path: Path, src: str, tgt: str) -> DataConfig:
    (tmp_path / "s.de").write_text(src, encoding="utf-8")
    (tmp_path / "s.en").write_text(tgt, encoding="utf-8")
    split = {"source": str(tmp_path / "s.de"), "target": str(tmp_path / "s.en")}
    return DataConfig(source_lang="de", target_lang="en", train=split, validation=split)


def rewrite_keeping_stat(path: Path, text: str) -> None:
    """Edit in place with size and modification time kept (what ``touch -r`` and restored backups do)."""
    before = path.stat()
    assert len(text.encode()) == before.st_size
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)


@contextlib.contextmanager
def tmpfs(where: Path, *options: str):
    """A real small/read-only file system at ``where`` (needs root); skips the test where mounting is not allowed."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(where)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


# ------------------------------------------------------------ content keys
def test_an_edit_that_keeps_size_and_mtime_is_read_again(tmp_path):
    cache = tmp_path / "cache"
    data = pair(tmp_path, "ein Hund\nzwei Katzen\n", "a dog\ntwo cats\n")
    assert load_split(data, "train", cache).targets == ["a dog", "two cats"]
    rewrite_keeping_stat(tmp_path / "s.en", "a cat\ntwo dogs\n")
    assert load_split(data, "train", cache).targets == ["a cat", "two dogs"]


def test_a_parquet_edit_that_keeps_size_and_mtime_is_read_again(tmp_path):
    """``datasets``' own parquet cache is keyed by mtime: it must not serve the old rows either."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path, cache = tmp_path / "c.parquet", tmp_path / "cache"
    split = {"path": str(path)}
    data = DataConfig(source_lang="de", target_lang="en", format="parquet", train=split, validation=split)
    pq.write_table(pa.table({"de": ["ein Hund"], "en": ["a dog"]}), path, compression="none")
    assert load_split(data, "train", cache).targets == ["a dog"]
    before = path.stat()
    raw = path.read_bytes()
    assert raw.count(b"a dog") >= 1
    path.write_bytes(raw.replace(b"a dog", b"a cat"))  # same length: the file keeps its size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert load_split(data, "train", cache).targets == ["a cat"]


# ------------------------------------------------------- damaged entries
def _entry(cache: Path) -> Path:
    (entry,) = [p for p in (cache / "splits").iterdir() if p.is_dir() and not p.name.startswith(".")]
    return entry


def _truncate(entry: Path) -> None:
    arrow = entry / "pairs.arrow"
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])


def _garble(entry: Path) -> None:
    """Same size, different bytes: the text of a sentence overwritten in place."""
    arrow = entry / "pairs.arrow"
    raw = arrow.read_bytes()
    assert b"two cats" in raw
    arrow.write_bytes(raw.replace(b"two cats", b"two rats"))


def _garble_header(entry: Path) -> None:
    arrow = entry / "pairs.arrow"
    raw = bytearray(arrow.read_bytes())
    raw[:64] = bytes(64)
    arrow.write_bytes(bytes(raw))


def _arrow_gone(entry: Path) -> None:
    (entry / "pairs.arrow").unlink()


def _meta_not_json(entry: Path) -> None:
    (entry / "meta.json").write_text('{"raw": 2, "dro', encoding="utf-8")


def _meta_wrong_shape(entry: Path) -> None:
    (entry / "meta.json").write_text("[1, 2, 3]\n", encoding="utf-8")


def _meta_edited(entry: Path) -> None:
    record = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
    inner = record.get("meta", record)
    inner["kept"] = 0  # plausible JSON, wrong content: the split would read as empty
    (entry / "meta.json").write_text(json.dumps(record), encoding="utf-8")


def _meta_binary(entry: Path) -> None:
    (entry / "meta.json").write_bytes(b"\xff\xfe\x00garbage")


DAMAGE = [
    _truncate,
    _garble,
    _garble_header,
    _arrow_gone,
    _meta_not_json,
    _meta_wrong_shape,
    _meta_edited,
    _meta_binary,
]


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__.strip("_"))
def test_a_damaged_split_entry_is_rebuilt_with_a_warning(tmp_path, caplog, damage):
    cache = tmp_path / "cache"
    data = pair(tmp_path, "ein Hund\nzwei Katzen\n", "a dog\ntwo cats\n")
    load_split(data, "train", cache)
    damage(_entry(cache))
    with caplog.at_level(logging.WARNING):
        corpus = load_split(data, "train", cache)
    assert (corpus.sources, corpus.targets) == (["ein Hund", "zwei Katzen"], ["a dog", "two cats"])
    assert any("damaged" in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # rebuilt once: the next run opens it quietly
        assert load_split(data, "train", cache).targets == ["a dog", "two cats"]
    assert not any("damaged" in r.getMessage() for r in caplog.records)


def test_any_entry_kind_is_checked_when_opened(tmp_path, caplog):
    """The seal is generic (tokenizer and subword-id entries use the same ``cached``)."""
    builds = []

    def build(folder: Path) -> dict:
        builds.append(folder)
        (folder / "spm.model").write_bytes(b"model-bytes-" * 100)
        return {"files": ["spm.model"]}

    entry = tmp_path / "tokenizers" / "k"
    assert cached(entry, build) == ({"files": ["spm.model"]}, False)
    assert cached(entry, build) == ({"files": ["spm.model"]}, True)
    raw = bytearray((entry / "spm.model").read_bytes())
    raw[500] ^= 0xFF
    (entry / "spm.model").write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING):
        assert cached(entry, build) == ({"files": ["spm.model"]}, False)
    assert len(builds) == 2 and (entry / "spm.model").read_bytes() == b"model-bytes-" * 100
    assert any("spm.model" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------- unusable locations
def _assert_names_the_cache(message: str, folder: Path) -> None:
    assert str(folder) in message and "SEQ2SEQ_RNN_CACHE" in message, message


def test_a_cache_that_is_a_file_is_one_clear_error(tmp_path):
    data = pair(tmp_path, "a\n", "b\n")
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    with pytest.raises(DataError) as info:
        load_split(data, "train", blocker)
    _assert_names_the_cache(str(info.value), blocker)
    assert blocker.read_text() == "not a folder"


def test_a_read_only_cache_serves_its_entries_and_names_itself_when_one_is_missing(tmp_path):
    data = pair(tmp_path, "ein Hund\n", "a dog\n")
    with tmpfs(tmp_path / "ro", "size=4m") as cache:
        load_split(data, "train", cache)  # built while writable
        subprocess.run(["mount", "-o", "remount,ro", str(cache)], check=True)
        assert load_split(data, "train", cache).targets == ["a dog"]  # a hit needs no write
        (tmp_path / "other").mkdir()
        other = pair(tmp_path / "other", "zwei\n", "two\n")
        with pytest.raises(DataError) as info:
            load_split(other, "train", cache)
        _assert_names_the_cache(str(info.value), cache)
        assert "read-only" in str(info.value)


def test_a_full_disk_is_one_clear_error_and_leaves_no_partial_entry(tmp_path):
    big = "".join(f"Satz Nummer {i} mit etwas Text darin\n" for i in range(20_000))
    data = pair(tmp_path, big, big.replace("Satz Nummer", "sentence number"))
    with tmpfs(tmp_path / "small", "size=256k") as cache:
        with pytest.raises(DataError) as info:
            load_split(data, "train", cache)
        _assert_names_the_cache(str(info.value), cache)
        assert "full" in str(info.value)
        assert not [p for p in (cache / "splits").iterdir() if not p.name.endswith(".lock")]


def test_a_disk_that_fills_while_the_tokenizer_is_trained_is_named_as_full(tmp_path):
    """sentencepiece writes a cut-off model without an error; the cause must still read as a full disk."""
    from seq2seq_rnn.config import load_recipe
    from seq2seq_rnn.run.directory import RunDir
    from seq2seq_rnn.training import prepare_data
    from tests.helpers import SMALL

    recipe = load_recipe(ROOT / "recipes" / "tiny.yaml", [f"{k}={v}" for k, v in SMALL.items()])
    with tmpfs(tmp_path / "small", "size=120k") as cache:
        with pytest.raises(DataError) as info:
            prepare_data(recipe, RunDir(tmp_path / "run"), cache)
        _assert_names_the_cache(str(info.value), cache)
        assert "full" in str(info.value)


def test_the_cli_reports_an_unusable_cache_without_a_traceback(tmp_path):
    blocker = tmp_path / "cache-file"
    blocker.write_text("x")
    data = pair(tmp_path, "ein Hund\n", "a dog\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "data:\n  source_lang: de\n  target_lang: en\n"
        f"  train: {{source: {data.train.source}, target: {data.train.target}}}\n"
        f"  validation: {{source: {data.train.source}, target: {data.train.target}}}\n"
        "train: {max_steps: 1}\n",
        encoding="utf-8",
    )
    env = {**os.environ, "SEQ2SEQ_RNN_CACHE": str(blocker)}
    done = subprocess.run(
        [sys.executable, "-m", "seq2seq_rnn.cli", "train", str(recipe), "--output-dir", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    _assert_names_the_cache(done.stderr, blocker)
