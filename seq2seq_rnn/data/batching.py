"""Batches of subword ids: padding, token-budget batching and decoding batches.

Shapes: B sentences, S source length (subwords + EOS), T target length
(subwords + 1: BOS in front for the decoder input, EOS behind for its output).
PAD=0 fills the tail of shorter rows.

:class:`TokenBatchSampler` makes training resumable: the batches of an epoch
depend only on (seed, epoch), so (epoch, index in epoch) names one batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from seq2seq_rnn.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from seq2seq_rnn.errors import DataError


@dataclass
class Batch:
    """A padded batch. ``tgt_in``/``tgt_out`` are None when there is no target (translation).

    src: (B, S) source ids followed by EOS, PAD after; src_lengths: (B,) counts EOS;
    tgt_in: (B, T) BOS + target ids; tgt_out: (B, T) target ids + EOS. All int64.
    """

    src: torch.Tensor
    src_lengths: torch.Tensor
    tgt_in: torch.Tensor | None = None
    tgt_out: torch.Tensor | None = None

    @property
    def size(self) -> int:
        """B, the number of sentences."""
        return self.src.size(0)

    @property
    def ntokens(self) -> int:
        """Non-pad target tokens (the loss is summed over these); 0 without a target."""
        return 0 if self.tgt_out is None else int((self.tgt_out != PAD_ID).sum())

    def pin_memory(self) -> Batch:
        """A copy in page-locked memory (for non-blocking copies to a GPU)."""
        return Batch(
            *(None if t is None else t.pin_memory() for t in (self.src, self.src_lengths, self.tgt_in, self.tgt_out))
        )  # type: ignore[arg-type]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """A copy with every tensor (``src_lengths`` too) on ``device``."""

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return Batch(move(self.src), move(self.src_lengths), move(self.tgt_in), move(self.tgt_out))  # type: ignore[arg-type]


def collate(src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]] | None = None) -> Batch:
    """Pad ``src`` (+EOS) and ``tgt`` (BOS+y / y+EOS) into a :class:`Batch`; rows keep their order."""
    if not src:
        raise ValueError("collate needs at least one sentence")
    src_rows = [[*seq, EOS_ID] for seq in src]
    lengths = torch.tensor([len(row) for row in src_rows], dtype=torch.long)
    if tgt is None:
        return Batch(_pad(src_rows), lengths)
    if len(tgt) != len(src):
        raise ValueError(f"collate got {len(src)} source and {len(tgt)} target sentences")
    tgt_in = _pad([[BOS_ID, *seq] for seq in tgt])
    tgt_out = _pad([[*seq, EOS_ID] for seq in tgt])
    return Batch(_pad(src_rows), lengths, tgt_in, tgt_out)


def _pad(rows: list[list[int]]) -> torch.Tensor:
    """(B, L) int64, rows left-aligned and PAD-filled to the longest row L."""
    out = torch.full((len(rows), max(len(r) for r in rows)), PAD_ID, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


class BatchPlan:
    """One rank's batches of one epoch as index arrays: ``batch(i)`` is the i-th, in training order.

    Held as two numpy arrays (the epoch's sentence order and each batch's [start, end)
    in it), never as Python lists: ~16 bytes a sentence however large the corpus.
    """

    def __init__(self, order: np.ndarray, bounds: np.ndarray) -> None:
        self.order, self.bounds = order, bounds  # bounds: (n_batches, 2) int64

    def __len__(self) -> int:
        return len(self.bounds)

    def batch(self, i: int) -> np.ndarray:
        start, end = self.bounds[i]
        return self.order[start:end]

    def tolist(self) -> list[list[int]]:
        return [self.batch(i).tolist() for i in range(len(self))]


class TokenBatchSampler:
    """Length-bucketed batches of sentence indices under a padded-token budget.

    A batch of n sentences costs n × (max(src_len, tgt_len) + 1) padded tokens
    and stays ≤ ``batch_tokens``; a single longer sentence forms a batch of 1.
    With ``num_replicas`` > 1, rank r gets every R-th batch of the shuffled
    order: the ranks' batches are disjoint and every rank gets the same count
    (large batches are split in two until the count divides evenly; only if
    that is impossible are the last few batches dropped).

    Planning works on a numpy array of sizes (one sort and one vectorised cut
    per epoch), so a rank plans its share of millions of pairs in well under a
    second without reading a token; the cut is the same greedy one as a loop
    over the sorted sentences, so batches are those of earlier versions.
    """

    def __init__(
        self,
        src_lengths: Sequence[int] | np.ndarray,
        tgt_lengths: Sequence[int] | np.ndarray,
        batch_tokens: int,
        seed: int,
        shuffle: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        if len(src_lengths) != len(tgt_lengths):
            raise ValueError(f"{len(src_lengths)} source lengths but {len(tgt_lengths)} target lengths")
        if batch_tokens < 1:
            raise ValueError(f"batch_tokens must be ≥ 1, got {batch_tokens}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas={num_replicas}), got {rank}")
        self.sizes = np.maximum(np.asarray(src_lengths, dtype=np.int64), np.asarray(tgt_lengths, dtype=np.int64)) + 1
        self.batch_tokens = batch_tokens
        self.seed = seed
        self.shuffle = shuffle
        self.num_replicas = num_replicas
        self.rank = rank
        # sizes as uint16 when they fit: numpy sorts them stably by radix, in linear time
        self._sort_keys = self.sizes.astype(np.uint16) if self.sizes.max(initial=0) < 2**16 else self.sizes
        if len(self.sizes) < num_replicas:
            raise DataError(f"{len(self.sizes)} sentences cannot fill a batch on each of {num_replicas} workers")

    def plan(self, epoch: int) -> BatchPlan:
        """This rank's batches for ``epoch``, in training order; the same for the same (seed, epoch)."""
        rng = np.random.default_rng([self.seed % 2**63, epoch])
        if self.shuffle:  # by size, ties in random order: np.lexsort((random, sizes)), 10x faster
            by_random = np.argsort(rng.random(len(self.sizes)), kind="stable")
            order = by_random[np.argsort(self._sort_keys[by_random], kind="stable")]
        else:
            order = np.argsort(self._sort_keys, kind="stable")
        bounds = _even_out(_cut(self.sizes[order], self.batch_tokens), self.num_replicas)
        if self.shuffle:
            bounds = bounds[rng.permutation(len(bounds))]
        return BatchPlan(order, bounds[self.rank :: self.num_replicas])

    def batches(self, epoch: int) -> list[list[int]]:
        """:meth:`plan` as lists (small corpora and tests)."""
        return self.plan(epoch).tolist()

    def num_batches(self, epoch: int = 0) -> int:
        """len(self.plan(epoch)), the same on every rank."""
        return len(self.plan(epoch))


def _cut(sorted_sizes: np.ndarray, budget: int) -> np.ndarray:
    """[start, end) of greedy batches over ascending sizes: extend while (n + 1) × size ≤ budget.

    Sizes ascend, so (k + 1) × size[start + k] ascends in k: a batch ends at the first
    k ≥ 1 over the budget, found in a window of budget // size[start] + 1 entries.
    """
    n = len(sorted_sizes)
    bounds, start = [], 0
    while start < n:
        window = min(n - start, budget // int(sorted_sizes[start]) + 1)
        costs = np.arange(1, window + 1) * sorted_sizes[start : start + window]
        over = np.flatnonzero(costs[1:] > budget)
        length = int(over[0]) + 1 if len(over) else window
        bounds.append((start, start + length))
        start += length
    return np.asarray(bounds, dtype=np.int64).reshape(-1, 2)


def _even_out(bounds: np.ndarray, replicas: int) -> np.ndarray:
    """Split the largest batches until ``replicas`` divides their number; else drop the remainder."""
    while len(bounds) % replicas:
        sizes = bounds[:, 1] - bounds[:, 0]
        largest = int(np.argmax(sizes))  # the first of the largest, as max() picks
        if sizes[largest] < 2:
            return bounds[: len(bounds) - len(bounds) % replicas]
        start, end = bounds[largest]
        half = start + (end - start) // 2
        bounds = np.concatenate([bounds[:largest], [[start, half], [half, end]], bounds[largest + 1 :]])
    return bounds


def sentence_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices in batches of ≤ ``batch_size`` sentences, longest first (callers restore the order)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
