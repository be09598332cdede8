"""Tokenize once: subword ids in the data cache are reused by a resumed run, a second worker and evaluate.

In-process Trainers on the shrunken tiny recipe with a private cache folder.
"No re-tokenization" is asserted by making the split reader, the tokenizer's
training and the tokenizing map function fail after the first preparation:
whatever reads the data again must find it in the cache.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seq2seq_rnn.config import load_recipe
from seq2seq_rnn.data import collate, load_split
from seq2seq_rnn.data import corpus as corpus_module
from seq2seq_rnn.data import tokens as tokens_module
from seq2seq_rnn.data.tokenizer import SubwordTokenizer
from seq2seq_rnn.training import Hooks, Trainer
from tests.helpers import TINY, small_overrides


def recipe(**changes: object):
    settings: dict[str, object] = {"train__max_steps": 4, "train__validate_every": 2, **changes}
    return load_recipe(TINY, small_overrides(**settings)[1::2])


def forbid_reading_and_tokenizing(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_args: object, **_kwargs: object) -> None:
        pytest.fail("the corpus was read or tokenized again")

    monkeypatch.setattr(tokens_module._TokenizeRows, "__call__", fail)  # the only caller of encode on a split
    monkeypatch.setattr(SubwordTokenizer, "train", fail)
    monkeypatch.setattr(corpus_module, "_write_pairs", fail)


def test_resume_and_a_second_worker_reuse_the_token_cache(tmp_path, monkeypatch):
    cache, run = tmp_path / "cache", tmp_path / "run"
    first = Trainer(recipe(), run, cache_dir=cache)
    first.fit()
    assert not first.data.train.reused  # tokenized here, once
    forbid_reading_and_tokenizing(monkeypatch)
    resumed = Trainer(recipe(train__max_steps=6), run, resume=True, cache_dir=cache)
    resumed.fit()
    assert resumed.progress.step == 6 and resumed.data.train.reused and resumed.data.validation_ids.reused
    # rank 1 of 2 in a run directory holding the same tokenizer: opens the same files
    worker = Trainer(recipe(), tmp_path / "rank1", hooks=Hooks(rank=1, world_size=2), cache_dir=cache)
    (tmp_path / "rank1").mkdir()
    for f in first.run.tokenizer.iterdir():
        (worker.run.tokenizer).mkdir(exist_ok=True)
        (worker.run.tokenizer / f.name).write_bytes(f.read_bytes())
    worker.prepare()
    assert worker.data.train.key == first.data.train.key and worker.data.train.reused
    assert worker.data.train.dataset.cache_files[0]["filename"] == first.data.train.dataset.cache_files[0]["filename"]


def test_cached_ids_and_batches_equal_fresh_tokenization(tmp_path):
    trainer = Trainer(recipe(), tmp_path / "run", cache_dir=tmp_path / "cache")
    trainer.prepare()
    d, tok = trainer.data, trainer.data.tokenizer
    corpus = load_split(trainer.recipe.data, "train", tmp_path / "cache")
    rows = np.array([0, 17, 5, len(corpus) - 1])
    src, tgt = (
        tok.encode_source([corpus.sources[i] for i in rows]),
        tok.encode_target([corpus.targets[i] for i in rows]),
    )
    assert d.train.ids(rows) == (src, tgt)
    fresh, cached = collate(src, tgt), d.train.batch(rows)
    for name in ("src", "src_lengths", "tgt_in", "tgt_out"):
        assert torch.equal(getattr(fresh, name), getattr(cached, name)), name
    # every planned batch respects the length filter and the token budget
    plan = trainer.sampler.plan(0)
    for i in range(len(plan)):
        batch = trainer.load_batch(plan.batch(i))
        assert batch.src.size(1) - 1 <= trainer.recipe.data.max_length


def test_tokenizer_trains_on_a_seeded_bounded_sample(tmp_path, caplog):
    import logging

    sizes = []
    for name in ("a", "b"):
        trainer = Trainer(recipe(tokenizer__sample_sentences=200), tmp_path / name, cache_dir=tmp_path / "cache")
        with caplog.at_level(logging.INFO, logger="seq2seq_rnn"):
            trainer.prepare()
        sizes.append(trainer.data.tokenizer.fingerprint)
    assert "tokenizer: training on 100 of 300 training pairs" in caplog.text
    assert sizes[0] == sizes[1]  # same seed, same sample, same model
    assert "copied from" in caplog.text  # the second run (a Tune trial, say) did not train it again


def test_each_rank_reads_only_its_own_disjoint_share(tmp_path):
    """Two ranks (no Ray needed: the share depends only on rank, world size, seed and epoch)."""
    rows_read = []
    for rank in range(2):
        trainer = Trainer(recipe(), tmp_path / f"rank{rank}", hooks=Hooks(rank=rank, world_size=2), cache_dir=tmp_path)
        trainer.prepare()
        read: list[int] = []
        batch_of = trainer.data.train.batch
        trainer.data.train.batch = lambda rows, batch_of=batch_of, read=read: read.extend(rows) or batch_of(rows)
        plan = trainer.sampler.plan(1)
        for i in range(len(plan)):
            trainer.load_batch(plan.batch(i))
        rows_read.append(read)
        kept = trainer.data.train_rows
    assert len(rows_read[0]) == len(set(rows_read[0])) > 0
    assert set(rows_read[0]).isdisjoint(rows_read[1])
    assert set(rows_read[0]) | set(rows_read[1]) == set(kept.tolist())  # together: the whole corpus, once


def test_preparing_data_prints_nothing(tmp_path, monkeypatch):
    """Ray Train patches print() into its worker logs; datasets' hashing of in-memory tables used to
    disassemble functions (dill.detect.nestedglobals → dis.dis under a captured stdout), which then
    filled every worker's log with bytecode. The Arrow path hashes nothing and prints nothing."""
    import builtins

    printed: list[tuple[object, ...]] = []
    monkeypatch.setattr(builtins, "print", lambda *args, **kwargs: printed.append(args))
    Trainer(recipe(), tmp_path / "run", cache_dir=tmp_path / "cache").prepare()
    assert printed == []


def test_parallel_tokenization_equals_one_process(tmp_path):
    from seq2seq_rnn.data import load_split_table, tokenize_split

    trainer = Trainer(recipe(), tmp_path / "run", cache_dir=tmp_path / "a")
    trainer.prepare()
    table = load_split_table(trainer.recipe.data, "train", tmp_path / "b")
    parallel = tokenize_split(table, trainer.data.tokenizer, tmp_path / "b", num_proc=2)
    assert len(parallel.dataset.cache_files) == 2  # one Arrow file per process, read back in order
    rows = np.arange(len(parallel))
    assert parallel.ids(rows) == trainer.data.train.ids(rows)
    assert np.array_equal(parallel.src_lengths, trainer.data.train.src_lengths)


def test_a_build_killed_halfway_leaves_nothing_that_is_reused(tmp_path):
    from seq2seq_rnn.data.cache import cached

    entry = tmp_path / "entry"
    (tmp_path / ".entry.tmp-99999").mkdir()  # a build killed by SIGKILL
    (tmp_path / ".entry.tmp-99999" / "half.arrow").write_bytes(b"x")

    def fail(folder):
        (folder / "part").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cached(entry, fail)
    assert not entry.exists() and not list(tmp_path.glob(".entry.tmp-*"))
    meta, hit = cached(entry, lambda folder: {"n": 1})
    assert (meta, hit) == ({"n": 1}, False) and cached(entry, fail) == ({"n": 1}, True)
