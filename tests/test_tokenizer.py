"""Subword tokenizers: training, loading, round trips and the fixed special ids."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import pytest

from seq2seq_rnn.config import TokenizerConfig
from seq2seq_rnn.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, SubwordTokenizer
from seq2seq_rnn.errors import CheckpointError, DataError

MULTI30K = Path(__file__).resolve().parents[1] / "data" / "multi30k"


def read(name: str, n: int) -> list[str]:
    with gzip.open(MULTI30K / name, "rt", encoding="utf-8") as handle:
        return [next(handle).rstrip("\n") for _ in range(n)]


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], list[str]]:
    return read("train.de.gz", 400), read("train.en.gz", 400)


@pytest.mark.parametrize("joint", [True, False])
@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_train_load_roundtrip(tmp_path, corpus, joint, model_type):
    de, en = corpus
    cfg = TokenizerConfig(model_type=model_type, vocab_size=500, joint=joint)
    tok = SubwordTokenizer.train(cfg, de, en, tmp_path, seed=1)
    assert tok.joint is joint
    names = ["spm.model"] if joint else ["spm.src.model", "spm.tgt.model"]
    assert [f.name for f in tok.files] == names and all(f.is_file() for f in tok.files)

    loaded = SubwordTokenizer.load(tmp_path)
    assert loaded.joint is joint and loaded.files == tok.files
    assert (loaded.source_vocab_size, loaded.target_vocab_size) == (tok.source_vocab_size, tok.target_vocab_size)
    assert loaded.encode_source(de[:20]) == tok.encode_source(de[:20])

    # ordinary sentences, seen and unseen, survive encode → decode
    sentences = en[:20] + ["A dog runs on the beach.", "Two men are playing soccer in a park."]
    ids = loaded.encode_target(sentences)
    assert all(PAD_ID not in seq and BOS_ID not in seq and EOS_ID not in seq for seq in ids)
    assert loaded.decode_target(ids) == sentences
    assert loaded.encode_source(["Ein Hund läuft."])[0] and max(max(s) for s in ids) < loaded.target_vocab_size


def test_training_is_deterministic(tmp_path, corpus):
    cfg = TokenizerConfig(vocab_size=300)
    first = SubwordTokenizer.train(cfg, *corpus, tmp_path / "a", seed=3)
    second = SubwordTokenizer.train(cfg, *corpus, tmp_path / "b", seed=3)
    # the .model file embeds its own path (trainer_spec.model_prefix), so compare the vocabularies
    assert (tmp_path / "a" / "spm.vocab").read_bytes() == (tmp_path / "b" / "spm.vocab").read_bytes()
    assert first.encode_source(corpus[0][:50]) == second.encode_source(corpus[0][:50])


def test_special_ids_fixed_and_shared(tmp_path, corpus):
    tok = SubwordTokenizer.train(TokenizerConfig(vocab_size=300, joint=False), *corpus, tmp_path, seed=1)
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert tok.target_pieces([PAD_ID, UNK_ID, BOS_ID, EOS_ID]) == ["<pad>", "<unk>", "<s>", "</s>"]
    ids = tok.encode_target(["a dog"])[0]
    # decoding skips BOS/PAD and stops at the first EOS
    assert tok.decode_target([[BOS_ID, *ids, EOS_ID, *ids, PAD_ID]]) == ["a dog"]
    assert tok.source_pieces("Ein Hund.")[0].startswith("▁")


def test_small_corpus_lowers_vocab_with_warning(tmp_path, corpus, caplog):
    with caplog.at_level(logging.WARNING, logger="seq2seq_rnn.data.tokenizer"):
        tok = SubwordTokenizer.train(TokenizerConfig(vocab_size=8000), corpus[0][:50], corpus[1][:50], tmp_path, 1)
    assert tok.source_vocab_size < 8000
    assert "tokenizer.vocab_size" in caplog.text


def test_vocab_smaller_than_alphabet_is_a_data_error(tmp_path, corpus):
    with pytest.raises(DataError, match="vocab_size=16"):
        SubwordTokenizer.train(TokenizerConfig(vocab_size=16), *corpus, tmp_path, seed=1)


def test_switching_layout_removes_stale_models(tmp_path, corpus):
    SubwordTokenizer.train(TokenizerConfig(vocab_size=300, joint=True), *corpus, tmp_path, seed=1)
    separate = SubwordTokenizer.train(TokenizerConfig(vocab_size=300, joint=False), *corpus, tmp_path, seed=1)
    assert not (tmp_path / "spm.model").exists()
    assert SubwordTokenizer.load(tmp_path).files == separate.files


def test_load_missing_model(tmp_path):
    with pytest.raises(CheckpointError, match=str(tmp_path / "spm.model")):
        SubwordTokenizer.load(tmp_path)


def test_load_corrupt_model(tmp_path):
    (tmp_path / "spm.model").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match=r"spm\.model: cannot load"):
        SubwordTokenizer.load(tmp_path)
