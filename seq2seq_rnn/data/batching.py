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


class TokenBatchSampler:
    """Length-bucketed batches of sentence indices under a padded-token budget.

    A batch of n sentences costs n × (max(src_len, tgt_len) + 1) padded tokens
    and stays ≤ ``batch_tokens``; a single longer sentence forms a batch of 1.
    With ``num_replicas`` > 1, rank r gets every R-th batch of the shuffled
    order: the ranks' batches are disjoint and every rank gets the same count
    (large batches are split in two until the count divides evenly; only if
    that is impossible are the last few batches dropped).
    """

    def __init__(
        self,
        src_lengths: Sequence[int],
        tgt_lengths: Sequence[int],
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
        if len(self.sizes) < num_replicas:
            raise DataError(f"{len(self.sizes)} sentences cannot fill a batch on each of {num_replicas} workers")

    def batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches for ``epoch``, in training order; the same for the same (seed, epoch)."""
        rng = np.random.default_rng([self.seed % 2**63, epoch])
        if self.shuffle:
            order = np.lexsort((rng.random(len(self.sizes)), self.sizes))  # by size, ties in random order
        else:
            order = np.argsort(self.sizes, kind="stable")
        chunks = _even_out(self._chunk(order), self.num_replicas)
        if self.shuffle:
            chunks = [chunks[i] for i in rng.permutation(len(chunks))]
        return chunks[self.rank :: self.num_replicas]

    def num_batches(self, epoch: int = 0) -> int:
        """len(self.batches(epoch)), the same on every rank."""
        return len(self.batches(epoch))

    def _chunk(self, order: np.ndarray) -> list[list[int]]:
        """Cut indices sorted by ascending size into batches under the budget."""
        chunks: list[list[int]] = []
        current: list[int] = []
        for index in order.tolist():
            if current and (len(current) + 1) * int(self.sizes[index]) > self.batch_tokens:
                chunks.append(current)
                current = []
            current.append(index)
        chunks.append(current)
        return chunks


def _even_out(chunks: list[list[int]], replicas: int) -> list[list[int]]:
    """Split the largest batches until ``replicas`` divides their number; else drop the remainder."""
    chunks = list(chunks)
    while len(chunks) % replicas:
        largest = max(range(len(chunks)), key=lambda i: len(chunks[i]))
        batch = chunks[largest]
        if len(batch) < 2:
            return chunks[: len(chunks) - len(chunks) % replicas]
        half = len(batch) // 2
        chunks[largest : largest + 1] = [batch[:half], batch[half:]]
    return chunks


def sentence_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices in batches of ≤ ``batch_size`` sentences, longest first (callers restore the order)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
