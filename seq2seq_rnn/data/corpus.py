"""Parallel corpora: every split of every format becomes a memory-mapped Arrow dataset.

:func:`load_split_table` reads one split once into the data cache
(:mod:`seq2seq_rnn.data.cache`) as an Arrow file with ``source`` and ``target``
string columns (the ``limit`` applied, pairs with an empty side dropped and
counted) and returns it as a :class:`datasets.Dataset` mapped from that file:
the corpus lives on disk and in the page cache, never as Python objects, and a
second run, worker or trial reading the same files opens the same Arrow file.
:func:`load_split` gives a small split (validation, test) as Python lists.

Sources: ``text``, ``tsv`` and ``jsonl`` files are read by our own line reader;
``parquet`` by ``load_dataset("parquet")``; ``hub`` by ``load_dataset`` (a hub
name or a local folder in hub layout) or ``load_from_disk`` (a folder written by
``save_to_disk``). Either way the pairs stream in batches through
``datasets``' ``ArrowWriter`` into the cache.

Why not ``load_dataset("text")`` for local files: it opens files with Python's
universal newlines, so a lone ``\\r`` inside a sentence splits it in two and
silently shifts every later line of that file against its translation; and
invalid UTF-8 surfaces as ``DatasetGenerationError`` without file or line.
Our reader splits on ``\\n`` only, strips a trailing ``\\r`` (Windows line
endings) and a UTF-8 BOM, and names the file and line of any problem. Why not
``Dataset.from_generator`` around it: it wraps our errors in
``DatasetGenerationError`` and writes one row at a time (0.77 s for 300k pairs
here against 0.16 s for batches through ``ArrowWriter``).

Hub offline mode: ``datasets`` and ``huggingface_hub`` read ``HF_HUB_OFFLINE`` /
``HF_DATASETS_OFFLINE`` once, at import. Loading re-reads them at call time
and, if either is set, switches ``datasets.config.HF_HUB_OFFLINE`` and
``huggingface_hub.constants.HF_HUB_OFFLINE`` on for the duration of the call
only (restored afterwards), so an unreachable hub fails at once instead of
after ~23 s of retries.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seq2seq_rnn.config import DataConfig, SplitConfig
from seq2seq_rnn.data.cache import cache_root, cached, digest, file_stamp, require_regular_file, tree_stamp
from seq2seq_rnn.errors import DataError

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
_TRUE = {"1", "ON", "YES", "TRUE"}
_WRITE_BATCH = 20_000  # pairs per Arrow record batch: few batches, few header pages touched on opening
_VERSION = 3  # of the split cache's layout and semantics (3: local files keyed by content)


@dataclass(frozen=True)
class ParallelCorpus:
    """Aligned sentence pairs: ``targets[i]`` translates ``sources[i]``.

    ``dropped_empty`` counts pairs dropped because a side was empty or blank.
    """

    sources: list[str]
    targets: list[str]
    name: str
    dropped_empty: int = 0

    def __post_init__(self) -> None:
        assert len(self.sources) == len(self.targets), "sources and targets must align"

    def __len__(self) -> int:
        return len(self.sources)


@dataclass(frozen=True)
class SplitTable:
    """One split in the cache: ``dataset`` has ``source``/``target`` columns, memory-mapped.

    ``key`` names the cache entry (it changes whenever the split's content may);
    ``raw_pairs`` counts pairs before empty ones were dropped (``dropped_empty``).
    """

    dataset: datasets.Dataset
    name: str
    where: str
    key: str
    raw_pairs: int
    dropped_empty: int

    def __len__(self) -> int:
        return len(self.dataset)

    def iter_column(self, column: str, rows: Iterable[int] | None = None) -> Iterator[str]:
        """The sentences of ``column`` ("source" | "target"), in row order or of the given rows."""
        table = self.dataset if rows is None else self.dataset.select(rows)
        for batch in table.select_columns([column]).with_format("arrow").iter(batch_size=_WRITE_BATCH):
            yield from batch.column(column).to_pylist()

    def to_corpus(self) -> ParallelCorpus:
        columns = self.dataset.to_dict()
        return ParallelCorpus(columns["source"], columns["target"], self.name, self.dropped_empty)


# ------------------------------------------------------------------ public
def load_split(data: DataConfig, split: str, cache_dir: str | Path | None = None) -> ParallelCorpus:
    """Load ``split`` ("train" | "validation" | "test") of ``data`` as Python lists (small splits).

    See :func:`load_split_table`; ``cache_dir`` is the data cache (default: :func:`cache_root`).
    """
    return load_split_table(data, split, cache_dir).to_corpus()


def load_split_table(data: DataConfig, split: str, cache_dir: str | Path | None = None) -> SplitTable:
    """``split`` of ``data`` as a memory-mapped Arrow dataset, read into the cache on first use.

    The first ``limit`` raw pairs are kept (if set), then pairs with an empty
    side are dropped and counted (a warning each time the split is loaded).
    Raises :class:`DataError` for missing, unreadable or misaligned files and
    for a split left without pairs.
    """
    spec = _split_spec(data, split)
    datasets = _quiet_datasets()  # imported here: it takes ~2 s and only loading needs it
    root = cache_root(cache_dir)
    where = _describe(data, spec)
    key = digest(_VERSION, data.format, data.source_lang, data.target_lang, spec.model_dump(), _stamp(data, spec))

    def build(folder: Path) -> dict[str, Any]:
        try:
            return _write_pairs(_pairs(data, spec, root, folder), spec.limit, folder / "pairs.arrow")
        finally:  # datasets' own cache of a local parquet/hub-layout read: keyed by mtime, so never kept
            shutil.rmtree(folder / "read", ignore_errors=True)

    meta, hit = cached(root / "splits" / key, build)
    if meta["dropped"]:
        logger.warning("%s: dropped %d of %d pairs with an empty side (%s)", split, meta["dropped"], meta["raw"], where)
    if not meta["kept"]:
        raise DataError(
            f"the {split} split is empty: no sentence pairs left in {where} ({meta['dropped']} empty pairs dropped)"
        )
    logger.debug("%s: %s %s", split, "cache hit" if hit else "read into", root / "splits" / key)
    table = datasets.Dataset.from_file(str(root / "splits" / key / "pairs.arrow"))
    return SplitTable(table, split, where, key, meta["raw"], meta["dropped"])


def filter_by_length(src_ids: list[list[int]], tgt_ids: list[list[int]], max_length: int) -> tuple[list[int], int]:
    """Indices of pairs whose sides both have ≤ ``max_length`` tokens, and the dropped count."""
    if len(src_ids) != len(tgt_ids):
        raise ValueError(f"src_ids has {len(src_ids)} sequences but tgt_ids has {len(tgt_ids)}")
    lengths = [len(s) for s in src_ids], [len(t) for t in tgt_ids]
    kept = rows_within(np.asarray(lengths[0], dtype=np.int64), np.asarray(lengths[1], dtype=np.int64), max_length)
    return kept.tolist(), len(src_ids) - len(kept)


def rows_within(src_lengths: np.ndarray, tgt_lengths: np.ndarray, max_length: int) -> np.ndarray:
    """The length filter (the one place it lives): rows whose sides both have ≤ ``max_length``
    subwords. Training keeps these rows of the training split."""
    return np.flatnonzero((src_lengths <= max_length) & (tgt_lengths <= max_length))


# ------------------------------------------------------------- the split
def _split_spec(data: DataConfig, split: str) -> SplitConfig:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    spec = getattr(data, split)
    if spec is None:
        raise DataError(f"the recipe has no data.{split} split")
    return spec


def _describe(data: DataConfig, spec: SplitConfig) -> str:
    if data.format == "text":
        return f"{spec.source} + {spec.target}"
    if data.format == "hub":
        config = f" ({data.hub_config})" if data.hub_config else ""
        return f"hub dataset {data.hub_name}{config}, split {spec.split}"
    return str(spec.path)


def _stamp(data: DataConfig, spec: SplitConfig) -> Any:
    """What identifies the input's content: local files' stamps; a hub name as given."""
    if data.format == "text":
        paths = [Path(str(spec.source)), Path(str(spec.target))]
    elif data.format == "hub":
        folder = Path(str(data.hub_name))
        return [data.hub_name, data.hub_config, tree_stamp(folder) if folder.is_dir() else None]
    else:
        paths = [Path(str(spec.path))]
    return [tree_stamp(p) if p.is_dir() else file_stamp(p) for p in paths]


def _pairs(data: DataConfig, spec: SplitConfig, root: Path, scratch: Path) -> Iterator[tuple[str, str]]:
    """Every raw pair of the split, in order (empty sides included).

    ``scratch`` (inside the entry being built) holds ``datasets``' cache of a local
    parquet or hub-layout read: that cache is keyed by modification time, so sharing
    it would serve the old text of a file edited with its mtime kept.
    """
    if data.format == "text":
        return _read_text_pair(Path(str(spec.source)), Path(str(spec.target)))
    if data.format == "tsv":
        return _read_tsv(Path(str(spec.path)))
    if data.format == "jsonl":
        return _read_jsonl(Path(str(spec.path)), data.source_lang, data.target_lang)
    if data.format == "parquet":
        return _arrow_pairs(_load_parquet(data, spec, scratch / "read"), data, str(spec.path))
    local = Path(str(data.hub_name)).is_dir()
    hub_cache = scratch / "read" if local else root / "hub"
    return _arrow_pairs(_load_hub(data, spec, hub_cache), data, f"hub dataset {data.hub_name}")


def _write_pairs(pairs: Iterator[tuple[str, str]], limit: int | None, path: Path) -> dict[str, Any]:
    """Stream ``pairs`` (the first ``limit``) into an Arrow file, dropping pairs with an empty side.

    The iterator is still drained after the limit, so a misaligned or broken file fails
    the same way with or without one.
    """
    import datasets
    from datasets.arrow_writer import ArrowWriter

    features = datasets.Features({"source": datasets.Value("string"), "target": datasets.Value("string")})
    raw = dropped = 0
    sources: list[str] = []
    targets: list[str] = []
    with ArrowWriter(path=str(path), features=features, writer_batch_size=_WRITE_BATCH) as writer:
        for src, tgt in pairs:
            if limit is not None and raw >= limit:
                continue
            raw += 1
            if not src.strip() or not tgt.strip():
                dropped += 1
                continue
            sources.append(src)
            targets.append(tgt)
            if len(sources) == _WRITE_BATCH:
                writer.write_batch({"source": sources, "target": targets})
                sources, targets = [], []
        if sources or not raw - dropped:
            writer.write_batch({"source": sources, "target": targets})
        writer.finalize()
    return {"raw": raw, "dropped": dropped, "kept": raw - dropped}


# ------------------------------------------------------------ local files
def _read_text_pair(source: Path, target: Path) -> Iterator[tuple[str, str]]:
    """Line N of ``source`` with line N of ``target``; unequal line counts are an error naming both."""
    sources, targets = _read_lines(source), _read_lines(target)
    if (
        source.is_file() and target.is_file() and source.samefile(target)
    ):  # also through a link or another spelling of the path
        raise DataError(f"{source} is given as both source and target; they must be two files, one per language")
    for count, pair in enumerate(itertools.zip_longest(sources, targets), 1):
        if pair[0] is None or pair[1] is None:
            n_src = count - 1 + (pair[0] is not None) + sum(1 for _ in sources)
            n_tgt = count - 1 + (pair[1] is not None) + sum(1 for _ in targets)
            raise DataError(
                f"source and target have different numbers of lines: {n_src} in {source}, "
                f"{n_tgt} in {target}; line N of each must translate the other"
            )
        yield pair


def _read_tsv(path: Path) -> Iterator[tuple[str, str]]:
    for number, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            yield "", ""
            continue
        columns = line.split("\t")
        if len(columns) != 2:
            raise DataError(
                f"{path}, line {number}: expected 2 tab-separated columns (source, target), found {len(columns)}"
            )
        yield columns[0], columns[1]


def _read_jsonl(path: Path, source_lang: str, target_lang: str) -> Iterator[tuple[str, str]]:
    """One JSON object per line: ``{"de": …, "en": …}`` or ``{"translation": {"de": …, "en": …}}``."""
    for number, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}, line {number}: invalid JSON: {exc}") from None
        pair = record.get("translation", record) if isinstance(record, dict) else None
        yield _text_field(pair, source_lang, path, number), _text_field(pair, target_lang, path, number)


def _text_field(pair: Any, lang: str, path: Path, number: int) -> str:
    if not isinstance(pair, dict) or lang not in pair:
        raise DataError(
            f"{path}, line {number}: no {lang!r} text; expected an object like "
            f'{{"{lang}": "...", ...}} or {{"translation": {{"{lang}": "...", ...}}}}'
        )
    value = pair[lang]
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(f"{path}, line {number}: {lang!r} must be a string, got {type(value).__name__}")
    return value


def read_lines(path: str | Path) -> list[str]:
    """Lines of a UTF-8 text file (plain or ``.gz``, a leading BOM dropped), split on ``\\n`` only,
    without ``\\r\\n``/``\\n``. The one reader of data files (corpora, ``evaluate --src/--ref``)."""
    return list(_read_lines(Path(path)))


def _read_lines(path: Path) -> Iterator[str]:
    """:func:`read_lines`, one line at a time (a corpus never sits in memory as a list)."""
    require_regular_file(path)
    try:
        yield from _iter_lines(path)
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read: {exc}") from None


def _iter_lines(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{path}, line {number}: invalid UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1}); "
                    "convert the file to UTF-8, e.g. with iconv"
                ) from None
            yield text.rstrip("\n").rstrip("\r")


# ---------------------------------------------------------- Arrow sources
def _load_hub(data: DataConfig, spec: SplitConfig, hub_cache: Path) -> datasets.Dataset:
    """A hub split, a local folder in hub layout, or a ``save_to_disk`` folder (``load_from_disk``)."""
    import datasets

    folder = Path(str(data.hub_name))
    if folder.is_dir() and ((folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()):
        saved = datasets.load_from_disk(str(folder))
        if isinstance(saved, datasets.DatasetDict):
            if spec.split not in saved:
                raise DataError(f"{folder}: no split {spec.split!r}; it has {', '.join(saved)}")
            return saved[spec.split]
        return saved  # a single saved Dataset serves whichever split names it
    with _offline_from_env():
        try:
            return datasets.load_dataset(data.hub_name, data.hub_config, split=spec.split, cache_dir=str(hub_cache))
        except ConnectionError as exc:
            raise DataError(
                f"could not reach the Hugging Face hub for dataset {data.hub_name} (offline?); "
                f"use data.format: text|tsv|jsonl with local files ({exc})"
            ) from None
        except FileNotFoundError as exc:  # includes DatasetNotFoundError
            raise DataError(f"hub dataset {data.hub_name} not found: {exc}") from None
        except ValueError as exc:  # e.g. an unknown split or config name
            raise DataError(f"hub dataset {data.hub_name}: {exc}") from None


def _load_parquet(data: DataConfig, spec: SplitConfig, read_cache: Path) -> datasets.Dataset:
    """A parquet file, or every ``*.parquet`` file of a folder in name order."""
    import datasets

    path = Path(str(spec.path))
    files = sorted(str(f) for f in path.glob("*.parquet")) if path.is_dir() else [str(path)]
    if not files:
        raise DataError(f"{path}: no *.parquet files in this folder")
    try:
        return datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(read_cache))
    except Exception as exc:  # pyarrow's ArrowInvalid and datasets' errors have no common base
        raise DataError(f"{path}: cannot read as parquet: {exc}") from None


def _arrow_pairs(table: datasets.Dataset, data: DataConfig, what: str) -> Iterator[tuple[str, str]]:
    """(source, target) of each row: a ``translation`` column of {lang: text}, or one column per language."""
    src, tgt = data.source_lang, data.target_lang
    if "translation" in table.column_names:
        table = table.select_columns(["translation"]).flatten()
        src, tgt = f"translation.{src}", f"translation.{tgt}"
    if src not in table.column_names or tgt not in table.column_names:
        raise DataError(
            f"{what}: expected a 'translation' column or columns {data.source_lang!r} and "
            f"{data.target_lang!r}; found columns {', '.join(table.column_names)}"
        )
    for batch in table.select_columns([src, tgt]).with_format("arrow").iter(batch_size=_WRITE_BATCH):
        for s, t in zip(batch.column(src).to_pylist(), batch.column(tgt).to_pylist(), strict=True):
            yield ("" if s is None else str(s)), ("" if t is None else str(t))


@contextlib.contextmanager
def _offline_from_env() -> Iterator[None]:
    """Honour HF_HUB_OFFLINE / HF_DATASETS_OFFLINE set after ``datasets`` was imported."""
    if not any(os.environ.get(name, "").upper() in _TRUE for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        yield
        return
    import datasets.config
    import huggingface_hub.constants as hub_constants

    saved = (datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE, hub_constants.HF_HUB_OFFLINE)
    datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


def _quiet_datasets() -> Any:
    import datasets

    datasets.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    return datasets
