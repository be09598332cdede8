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
from seq2seq_rnn.train import Hooks, Trainer
from tests.helpers import TINY, small_overrides


def recipe(**changes: object):
    settings: dict[str, object] = {"train__max_steps": 4, "train__validate_every": 2, **changes}
    return load_recipe(TINY, small_overrides(**settings)[1::2])


def forbid_reading_and_tokenizing(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_args: object, **_kwargs: object) -> None:
        pytest.fail("the corpus was read or tokenized again")

    monkeypatch.setattr(tokens_module._Encoder, "__call__", fail)  # the only caller of encode on a split
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
    assert resumed.progress.step == 6 and resumed.data.train.reused and resumed.data.val.reused
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
        batch = trainer._load_batch(plan.batch(i))
        assert batch.src.size(1) - 1 <= trainer.recipe.data.max_length


def test_tokenizer_trains_on_a_seeded_bounded_sample(tmp_path, caplog):
    import logging

    sizes = []
    for name in ("a", "b"):
        trainer = Trainer(recipe(tokenizer__sample_sentences=200), tmp_path / name, cache_dir=tmp_path / "cache")
        with caplog.at_level(logging.INFO, logger="seq2seq_rnn"):
            trainer.prepare()
        sizes.append(trainer.data.tokenizer.fingerprint)
    assert "tokenizer: trained on 100 of 300 training pairs" in caplog.text
    assert sizes[0] == sizes[1]  # same seed, same sample, same model
