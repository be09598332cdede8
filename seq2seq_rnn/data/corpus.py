"""Parallel corpora: read one split of a recipe's data into aligned sentence pairs.

Local files (``text``, ``tsv``, ``jsonl``) are read by our own line reader and
then wrapped in a :class:`datasets.Dataset`; hub datasets come from
:func:`datasets.load_dataset`. Both end as a dataset with ``source`` and
``target`` columns, from which :func:`load_split` builds a
:class:`ParallelCorpus`.

Why not ``load_dataset("text")`` for local files: it opens files with Python's
universal newlines, so a lone ``\\r`` inside a sentence splits it in two and
silently shifts every later line of that file against its translation; and
invalid UTF-8 surfaces as ``DatasetGenerationError`` without file or line.
Our reader splits on ``\\n`` only, strips a trailing ``\\r`` (Windows line
endings), and names the file and line of any problem.

Hub offline mode: ``datasets`` and ``huggingface_hub`` read ``HF_HUB_OFFLINE`` /
``HF_DATASETS_OFFLINE`` once, at import. :func:`load_split` re-reads them at
call time and, if either is set, switches ``datasets.config.HF_HUB_OFFLINE``
and ``huggingface_hub.constants.HF_HUB_OFFLINE`` on for the duration of the
call only (restored afterwards), so an unreachable hub fails at once instead
of after ~23 s of retries.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seq2seq_rnn.config import DataConfig, SplitConfig
from seq2seq_rnn.errors import DataError

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
_TRUE = {"1", "ON", "YES", "TRUE"}


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


# ------------------------------------------------------------------ public
def load_split(data: DataConfig, split: str, cache_dir: str | Path | None = None) -> ParallelCorpus:
    """Load ``split`` ("train" | "validation" | "test") of ``data``.

    The first ``limit`` raw pairs are kept (if set), then pairs with an empty
    side are dropped and counted. ``cache_dir`` holds hub downloads; without it
    a temporary folder is used and removed, so nothing lands in the home folder.
    Raises :class:`DataError` for missing, unreadable or misaligned files and
    for a split left without pairs.
    """
    spec = _split_spec(data, split)
    datasets = _quiet_datasets()  # imported here: it takes ~2 s and only loading needs it
    if data.format == "hub":
        table = _load_hub(data, spec, cache_dir)
    else:
        table = datasets.Dataset.from_dict(dict(zip(("source", "target"), _read_local(data, spec), strict=True)))
    return _to_corpus(table, spec.limit, split, _describe(data, spec))


def filter_by_length(src_ids: list[list[int]], tgt_ids: list[list[int]], max_length: int) -> tuple[list[int], int]:
    """Indices of pairs whose sides both have ≤ ``max_length`` tokens, and the dropped count."""
    if len(src_ids) != len(tgt_ids):
        raise ValueError(f"src_ids has {len(src_ids)} sequences but tgt_ids has {len(tgt_ids)}")
    kept = [
        i
        for i, (s, t) in enumerate(zip(src_ids, tgt_ids, strict=True))
        if len(s) <= max_length and len(t) <= max_length
    ]
    return kept, len(src_ids) - len(kept)


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


def _to_corpus(table: datasets.Dataset, limit: int | None, split: str, where: str) -> ParallelCorpus:
    if limit is not None and limit < len(table):
        table = table.select(range(limit))
    columns = table.to_dict()  # one Arrow conversion; iterating a Column is ~40x slower
    sources, targets, dropped = [], [], 0
    for src, tgt in zip(columns["source"], columns["target"], strict=True):
        if not src.strip() or not tgt.strip():
            dropped += 1
            continue
        sources.append(src)
        targets.append(tgt)
    if dropped:
        logger.warning("%s: dropped %d of %d pairs with an empty side (%s)", split, dropped, len(table), where)
    if not sources:
        raise DataError(
            f"the {split} split is empty: no sentence pairs left in {where} ({dropped} empty pairs dropped)"
        )
    return ParallelCorpus(sources, targets, split, dropped)


# ------------------------------------------------------------ local files
def _read_local(data: DataConfig, spec: SplitConfig) -> tuple[list[str], list[str]]:
    if data.format == "text":
        return _read_text_pair(Path(str(spec.source)), Path(str(spec.target)))
    path = Path(str(spec.path))
    if data.format == "tsv":
        return _read_tsv(path)
    return _read_jsonl(path, data.source_lang, data.target_lang)


def _read_text_pair(source: Path, target: Path) -> tuple[list[str], list[str]]:
    sources, targets = read_lines(source), read_lines(target)
    if len(sources) != len(targets):
        raise DataError(
            f"source and target have different numbers of lines: {len(sources)} in {source}, "
            f"{len(targets)} in {target}; line N of each must translate the other"
        )
    return sources, targets


def _read_tsv(path: Path) -> tuple[list[str], list[str]]:
    sources, targets = [], []
    for number, line in enumerate(read_lines(path), 1):
        if not line.strip():
            sources.append("")
            targets.append("")
            continue
        columns = line.split("\t")
        if len(columns) != 2:
            raise DataError(
                f"{path}, line {number}: expected 2 tab-separated columns (source, target), found {len(columns)}"
            )
        sources.append(columns[0])
        targets.append(columns[1])
    return sources, targets


def _read_jsonl(path: Path, source_lang: str, target_lang: str) -> tuple[list[str], list[str]]:
    """One JSON object per line: ``{"de": …, "en": …}`` or ``{"translation": {"de": …, "en": …}}``."""
    sources, targets = [], []
    for number, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}, line {number}: invalid JSON: {exc}") from None
        pair = record.get("translation", record) if isinstance(record, dict) else None
        sources.append(_text_field(pair, source_lang, path, number))
        targets.append(_text_field(pair, target_lang, path, number))
    return sources, targets


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
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        return list(_iter_lines(path))
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


# -------------------------------------------------------------------- hub
def _load_hub(data: DataConfig, spec: SplitConfig, cache_dir: str | Path | None) -> datasets.Dataset:
    import datasets

    with _cache_folder(cache_dir) as cache, _offline_from_env():
        try:
            table = datasets.load_dataset(
                data.hub_name, data.hub_config, split=spec.split, cache_dir=cache, keep_in_memory=cache_dir is None
            )
        except ConnectionError as exc:
            raise DataError(
                f"could not reach the Hugging Face hub for dataset {data.hub_name} (offline?); "
                f"use data.format: text|tsv|jsonl with local files ({exc})"
            ) from None
        except FileNotFoundError as exc:  # includes DatasetNotFoundError
            raise DataError(f"hub dataset {data.hub_name} not found: {exc}") from None
        except ValueError as exc:  # e.g. an unknown split or config name
            raise DataError(f"hub dataset {data.hub_name}: {exc}") from None
        return _hub_columns(table, data)


def _hub_columns(table: datasets.Dataset, data: DataConfig) -> datasets.Dataset:
    """Reduce a hub split to ``source``/``target`` string columns."""
    src, tgt = data.source_lang, data.target_lang
    if "translation" in table.column_names:
        table = table.flatten()
        src, tgt = f"translation.{src}", f"translation.{tgt}"
    if src not in table.column_names or tgt not in table.column_names:
        raise DataError(
            f"hub dataset {data.hub_name}: expected a 'translation' column or columns {data.source_lang!r} and "
            f"{data.target_lang!r}; found columns {', '.join(table.column_names)}"
        )
    table = table.select_columns([src, tgt]).rename_columns({src: "source", tgt: "target"})
    return table.map(_none_to_empty, batched=True, keep_in_memory=True)


def _none_to_empty(batch: dict[str, list[Any]]) -> dict[str, list[str]]:
    return {key: ["" if value is None else str(value) for value in values] for key, values in batch.items()}


@contextlib.contextmanager
def _cache_folder(cache_dir: str | Path | None) -> Iterator[str]:
    if cache_dir is not None:
        yield str(cache_dir)
        return
    with tempfile.TemporaryDirectory(prefix="seq2seq_rnn_hf_") as folder:
        yield folder


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
