"""Batching invariants: token budget, coverage, determinism, replicas, padding."""

from __future__ import annotations

import random

import pytest
import torch

from seq2seq_rnn.data.batching import Batch, TokenBatchSampler, collate, sentence_batches
from seq2seq_rnn.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from seq2seq_rnn.errors import DataError


def lengths(n: int = 500, seed: int = 0) -> tuple[list[int], list[int]]:
    rng = random.Random(seed)
    src = [rng.randint(1, 40) for _ in range(n)]
    return src, [max(1, s + rng.randint(-5, 5)) for s in src]


def padded_cost(batch: list[int], src: list[int], tgt: list[int]) -> int:
    return len(batch) * (max(max(src[i], tgt[i]) for i in batch) + 1)


def test_budget_respected_and_every_index_once():
    src, tgt = lengths()
    src[7] = 300  # longer than the whole budget: a batch of its own
    sampler = TokenBatchSampler(src, tgt, batch_tokens=200, seed=1)
    batches = sampler.batches(epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(len(src)))
    assert [7] in batches
    assert all(padded_cost(b, src, tgt) <= 200 for b in batches if b != [7])
    assert sampler.num_batches(0) == len(batches)


def test_batches_group_similar_lengths():
    src, tgt = lengths(2000)
    batches = TokenBatchSampler(src, tgt, batch_tokens=400, seed=1).batches(0)
    spread = [max(src[i] for i in b) - min(src[i] for i in b) for b in batches]
    assert sum(spread) / len(spread) < 10  # random batches would spread over ~35


def test_deterministic_per_seed_and_epoch():
    src, tgt = lengths()
    a = TokenBatchSampler(src, tgt, batch_tokens=300, seed=5)
    b = TokenBatchSampler(src, tgt, batch_tokens=300, seed=5)
    assert a.batches(3) == b.batches(3) == a.batches(3)
    assert a.batches(3) != a.batches(4)
    assert a.batches(3) != TokenBatchSampler(src, tgt, batch_tokens=300, seed=6).batches(3)


def test_no_shuffle_is_sorted_and_epoch_independent():
    src, tgt = lengths()
    sampler = TokenBatchSampler(src, tgt, batch_tokens=300, seed=5, shuffle=False)
    assert sampler.batches(0) == sampler.batches(1)
    flat = [i for b in sampler.batches(0) for i in b]
    sizes = [max(src[i], tgt[i]) for i in flat]
    assert sizes == sorted(sizes)


@pytest.mark.parametrize("replicas", [2, 3, 4])
def test_ranks_disjoint_with_equal_counts(replicas):
    src, tgt = lengths(301)
    per_rank = [
        TokenBatchSampler(src, tgt, batch_tokens=250, seed=2, num_replicas=replicas, rank=r).batches(epoch=1)
        for r in range(replicas)
    ]
    assert len({len(b) for b in per_rank}) == 1 and len(per_rank[0]) > 0
    seen = [i for batches in per_rank for b in batches for i in b]
    assert len(seen) == len(set(seen))  # disjoint
    assert sorted(seen) == list(range(len(src)))  # splitting big batches kept every sentence
    for batches in per_rank:
        assert all(padded_cost(b, src, tgt) <= 250 for b in batches)


def test_replicas_drop_remainder_when_batches_cannot_split():
    src, tgt = [50, 50, 50], [50, 50, 50]  # every sentence needs a batch of its own
    per_rank = [TokenBatchSampler(src, tgt, 60, seed=0, num_replicas=2, rank=r).batches(0) for r in range(2)]
    assert [len(b) for b in per_rank] == [1, 1]
    assert set(per_rank[0][0]).isdisjoint(per_rank[1][0])


def test_sampler_argument_errors():
    with pytest.raises(ValueError, match="rank"):
        TokenBatchSampler([1], [1], 10, seed=0, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="target lengths"):
        TokenBatchSampler([1, 2], [1], 10, seed=0)
    with pytest.raises(DataError, match="1 sentences cannot fill a batch on each of 2 workers"):
        TokenBatchSampler([1], [1], 10, seed=0, num_replicas=2, rank=0)


def test_collate_shapes_padding_bos_eos():
    batch = collate([[5, 6, 7], [8]], [[9], [10, 11, 12, 13]])
    assert batch.src.tolist() == [[5, 6, 7, EOS_ID], [8, EOS_ID, PAD_ID, PAD_ID]]
    assert batch.src_lengths.tolist() == [4, 2]
    assert batch.tgt_in.tolist() == [[BOS_ID, 9, PAD_ID, PAD_ID, PAD_ID], [BOS_ID, 10, 11, 12, 13]]
    assert batch.tgt_out.tolist() == [[9, EOS_ID, PAD_ID, PAD_ID, PAD_ID], [10, 11, 12, 13, EOS_ID]]
    assert all(t.dtype == torch.long for t in (batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out))
    assert batch.ntokens == 7 and batch.size == 2
    inside = batch.tgt_in[:, 1:] != PAD_ID
    assert torch.equal(batch.tgt_in[:, 1:][inside], batch.tgt_out[:, :-1][inside])  # shifted by one


def test_collate_without_target_and_to_device():
    batch = collate([[5], [6, 7]], None)
    assert batch.tgt_in is None and batch.tgt_out is None and batch.ntokens == 0
    moved = batch.to("cpu")
    assert isinstance(moved, Batch) and torch.equal(moved.src, batch.src) and moved.tgt_in is None
    with pytest.raises(ValueError, match="2 source and 1 target"):
        collate([[1], [2]], [[3]])


def test_sentence_batches_cover_all_sorted_by_length():
    lens = [3, 9, 1, 9, 4, 7, 2]
    batches = sentence_batches(lens, batch_size=3)
    assert all(len(b) <= 3 for b in batches)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lens)))
    assert [lens[i] for i in flat] == sorted(lens, reverse=True)


# ------------------------------------------------- the planner of earlier versions
def _reference_batches(sizes: list[int], budget: int, seed: int, epoch: int, replicas: int, rank: int, shuffle: bool):
    """TokenBatchSampler.batches as it was before planning moved to numpy (lists, one loop)."""
    import numpy as np

    sizes_np = np.asarray(sizes, dtype=np.int64)
    rng = np.random.default_rng([seed % 2**63, epoch])
    order = np.lexsort((rng.random(len(sizes)), sizes_np)) if shuffle else np.argsort(sizes_np, kind="stable")
    chunks, current = [], []
    for index in order.tolist():
        if current and (len(current) + 1) * int(sizes_np[index]) > budget:
            chunks.append(current)
            current = []
        current.append(index)
    chunks.append(current)
    while len(chunks) % replicas:
        largest = max(range(len(chunks)), key=lambda i: len(chunks[i]))
        batch = chunks[largest]
        if len(batch) < 2:
            chunks = chunks[: len(chunks) - len(chunks) % replicas]
            break
        half = len(batch) // 2
        chunks[largest : largest + 1] = [batch[:half], batch[half:]]
    if shuffle:
        chunks = [chunks[i] for i in rng.permutation(len(chunks))]
    return chunks[rank::replicas]


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("replicas", [1, 2, 3])
def test_plans_equal_the_earlier_list_based_batches(shuffle, replicas):
    """The numpy planner cuts exactly as the old loop did: same seed, same batches, same order."""
    src, tgt = lengths(3001, seed=4)
    src[11] = 500  # a sentence over the budget
    sizes = [max(s, t) + 1 for s, t in zip(src, tgt, strict=True)]
    for epoch in (0, 3):
        for rank in range(replicas):
            new = TokenBatchSampler(src, tgt, 700, seed=9, shuffle=shuffle, num_replicas=replicas, rank=rank)
            assert new.batches(epoch) == _reference_batches(sizes, 700, 9, epoch, replicas, rank, shuffle)


def test_plan_of_a_million_sentences_is_arrays_not_lists():
    import numpy as np

    rng = np.random.default_rng(0)
    src = rng.integers(1, 60, 1_000_000)
    plan = TokenBatchSampler(src, src + 1, 4096, seed=1, num_replicas=2, rank=1).plan(0)
    assert isinstance(plan.order, np.ndarray) and len(plan) > 1000
    assert plan.batch(0).dtype == np.int64
