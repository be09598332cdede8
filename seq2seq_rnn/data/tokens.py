"""Subword ids of a split, computed once into the data cache and memory-mapped by every reader.

:func:`tokenize_split` runs ``Dataset.map(batched=True, num_proc=…)`` over a
:class:`~seq2seq_rnn.data.corpus.SplitTable` and keeps compact integer columns
(``src``/``tgt``: lists of uint16 ids, int32 when the vocabulary is larger, and
``src_len``/``tgt_len``: int32) in Arrow files under a key of (the split's
cache key, the tokenizer's fingerprint). A resumed run, each Ray worker, each
Tune trial with the same data and tokenizer, and ``evaluate`` open those files
instead of tokenizing again. The length filter (``data.max_length``) is not
applied here but when batches are planned, from the length columns, so one
entry serves every ``max_length``.

Shapes as in :mod:`seq2seq_rnn.data.batching`: B sentences, S source length
(subwords + EOS), T target length (subwords + 1).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from seq2seq_rnn.data.batching import Batch
from seq2seq_rnn.data.cache import cache_root, cached, digest
from seq2seq_rnn.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, SubwordTokenizer

if TYPE_CHECKING:
    import datasets
    import pyarrow as pa

    from seq2seq_rnn.data.corpus import SplitTable

log = logging.getLogger(__name__)

_VERSION = 2
# Sentences per map call and per Arrow record batch: ~30 MB of Python lists at a time, and few
# record batches (opening a file touches each batch's header page, and the kernel maps the
# neighbouring 64 KB with it: 3,000 batches of 1,000 rows made 200 MB of a 3M-pair file resident).
_MAP_BATCH = 20_000
_PARALLEL_FROM = 200_000  # pairs; below this, worker processes cost more than they save


@dataclass
class TokenizedSplit:
    """Subword ids of a split, row i of the split table ↔ row i here; ``reused``: read from the cache."""

    dataset: datasets.Dataset
    src_lengths: np.ndarray  # (N,) int32, subwords without EOS
    tgt_lengths: np.ndarray
    key: str
    reused: bool

    def __len__(self) -> int:
        return len(self.src_lengths)

    def __post_init__(self) -> None:
        table = self.dataset.data.table
        self._src, self._tgt = _IdColumn(table.column("src")), _IdColumn(table.column("tgt"))

    def batch(self, rows: np.ndarray | Sequence[int]) -> Batch:
        """Rows ``rows`` padded into a :class:`Batch` (the same tensors as :func:`~batching.collate`)."""
        rows = np.asarray(rows, dtype=np.int64)
        src_ids, tgt_ids = self._src.flat(rows), self._tgt.flat(rows)
        src = _padded(src_ids, self.src_lengths[rows], prefix=None, suffix=EOS_ID)
        tgt_in = _padded(tgt_ids, self.tgt_lengths[rows], prefix=BOS_ID, suffix=None)
        tgt_out = _padded(tgt_ids, self.tgt_lengths[rows], prefix=None, suffix=EOS_ID)
        lengths = torch.from_numpy(self.src_lengths[rows].astype(np.int64) + 1)
        return Batch(src, lengths, tgt_in, tgt_out)

    def ids(self, rows: np.ndarray | Sequence[int]) -> tuple[list[list[int]], list[list[int]]]:
        """(source ids, target ids) of ``rows`` as lists (inspection and tests)."""
        rows = np.asarray(rows, dtype=np.int64)
        return self._src.lists(rows), self._tgt.lists(rows)


def tokenize_split(
    table: SplitTable, tokenizer: SubwordTokenizer, cache_dir: str | Path | None = None, num_proc: int | None = None
) -> TokenizedSplit:
    """The subword ids of ``table`` from the cache, tokenizing (once, under a lock) on a miss."""
    import datasets

    root = cache_root(cache_dir)
    key = digest(_VERSION, table.key, tokenizer.fingerprint)
    folder = root / "tokens" / key

    def build(tmp: Path) -> dict[str, Any]:
        procs = num_proc or (min(os.cpu_count() or 1, 8) if len(table) >= _PARALLEL_FROM else 1)
        log.info("%s: tokenizing %d pairs (%d process%s)", table.name, len(table), procs, "es" * (procs > 1))
        wide = max(tokenizer.source_vocab_size, tokenizer.target_vocab_size) > 2**16
        ids = datasets.Sequence(datasets.Value("int32" if wide else "uint16"))
        features = datasets.Features(
            {"src": ids, "tgt": ids, "src_len": datasets.Value("int32"), "tgt_len": datasets.Value("int32")}
        )
        out = table.dataset.with_format("arrow").map(
            _TokenizeRows(tokenizer.files, wide),
            batched=True,
            batch_size=_MAP_BATCH,
            num_proc=procs if procs > 1 else None,
            remove_columns=["source", "target"],
            features=features,
            writer_batch_size=_MAP_BATCH,
            cache_file_name=str(tmp / "tokens.arrow"),
            new_fingerprint=key,  # our key: datasets need not hash the function
            load_from_cache_file=False,
        )
        return {"files": [Path(f["filename"]).name for f in out.cache_files], "pairs": len(out)}

    meta, hit = cached(folder, build)
    parts = [datasets.Dataset.from_file(str(folder / name)) for name in meta["files"]]
    dataset = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    arrow = dataset.data.table
    src_len = arrow.column("src_len").to_numpy().astype(np.int32, copy=False)
    tgt_len = arrow.column("tgt_len").to_numpy().astype(np.int32, copy=False)
    if hit:
        log.info("%s: subword ids of %d pairs read from the cache (%s)", table.name, len(dataset), folder)
    return TokenizedSplit(dataset, src_len, tgt_len, key, reused=hit)


class _TokenizeRows:
    """The map function: picklable (model paths, not processors) for ``num_proc`` workers."""

    def __init__(self, files: list[Path], wide: bool) -> None:
        self.files, self.wide = [str(f) for f in files], wide
        self._tokenizer: SubwordTokenizer | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"files": self.files, "wide": self.wide, "_tokenizer": None}

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        if self._tokenizer is None:
            self._tokenizer = SubwordTokenizer.load(Path(self.files[0]).parent)
        tok = self._tokenizer
        src = tok.encode_source(batch.column("source").to_pylist())
        tgt = tok.encode_target(batch.column("target").to_pylist())
        ids = pa.list_(pa.int32() if self.wide else pa.uint16())
        return pa.table(
            {
                "src": pa.array(src, type=ids),
                "tgt": pa.array(tgt, type=ids),
                "src_len": pa.array([len(s) for s in src], type=pa.int32()),
                "tgt_len": pa.array([len(t) for t in tgt], type=pa.int32()),
            }
        )


class _IdColumn:
    """A memory-mapped list<int> column as zero-copy numpy views, one per record batch.

    Reading a row slices the views: only the pages of the rows read become resident
    (pyarrow's ``take`` on a chunked column concatenated all its chunks first).
    """

    def __init__(self, column: pa.ChunkedArray) -> None:
        self.offsets = [chunk.offsets.to_numpy(zero_copy_only=True) for chunk in column.chunks]
        self.values = [chunk.values.to_numpy(zero_copy_only=True) for chunk in column.chunks]
        self.starts = np.cumsum([0, *(len(chunk) for chunk in column.chunks)])

    def _slices(self, rows: np.ndarray) -> list[np.ndarray]:
        chunks = np.searchsorted(self.starts, rows, side="right") - 1
        out = []
        for chunk, row in zip(chunks.tolist(), (rows - self.starts[chunks]).tolist(), strict=True):
            offsets = self.offsets[chunk]
            out.append(self.values[chunk][offsets[row] : offsets[row + 1]])
        return out

    def flat(self, rows: np.ndarray) -> np.ndarray:
        """The ids of ``rows``, concatenated in row order."""
        return np.concatenate(self._slices(rows)) if len(rows) else np.zeros(0, dtype=np.int64)

    def lists(self, rows: np.ndarray) -> list[list[int]]:
        return [part.tolist() for part in self._slices(rows)]


def _padded(flat: np.ndarray, lengths: np.ndarray, prefix: int | None, suffix: int | None) -> torch.Tensor:
    """(B, max(lengths) + 1) int64: [prefix] + ids + [suffix] per row, PAD after."""
    lengths = lengths.astype(np.int64)
    width = int(lengths.max()) + 1
    out = np.full((len(lengths), width), PAD_ID, dtype=np.int64)
    cols = np.arange(width)
    first = 1 if prefix is not None else 0
    out[(cols >= first) & (cols < lengths[:, None] + first)] = flat
    if prefix is not None:
        out[:, 0] = prefix
    if suffix is not None:
        out[np.arange(len(lengths)), lengths] = suffix
    return torch.from_numpy(out)
