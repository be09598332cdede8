"""Modules built from their config sections: checkpoints written before the reshape
(tests/data/pre_reshape_models.pt, made by the code of commit 6a9e65d) still load
and compute the same logits, and the same seed still gives the same initial weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seq2seq_rnn.cells import CellFactory
from seq2seq_rnn.config import AttentionConfig, DecoderConfig, EncoderConfig, ModelConfig
from seq2seq_rnn.errors import ConfigError
from seq2seq_rnn.model import Seq2Seq
from seq2seq_rnn.nn.attention import build_attention
from seq2seq_rnn.nn.decoder import Decoder
from seq2seq_rnn.nn.encoder import Encoder

FIXTURE = torch.load(Path(__file__).parent / "data" / "pre_reshape_models.pt", weights_only=True)
CASES = sorted(FIXTURE["cases"])


@pytest.mark.parametrize("name", CASES)
def test_pre_reshape_checkpoint_loads_and_computes_the_same(name: str) -> None:
    case = FIXTURE["cases"][name]
    model = Seq2Seq.from_config(ModelConfig.model_validate(case["config"]), 16, 16).eval()
    assert sorted(model.state_dict()) == sorted(case["state_dict"]), "state_dict key names changed"
    model.load_state_dict(case["state_dict"], strict=True)
    with torch.no_grad():
        logits = model(FIXTURE["src"], FIXTURE["lengths"], FIXTURE["tgt"])
    torch.testing.assert_close(logits, case["logits"])


@pytest.mark.parametrize("name", CASES)
def test_same_seed_gives_the_same_initial_weights_as_before(name: str) -> None:
    case = FIXTURE["cases"][name]
    torch.manual_seed(0)
    model = Seq2Seq.from_config(ModelConfig.model_validate(case["config"]), 16, 16)
    for key, value in case["state_dict"].items():
        torch.testing.assert_close(model.state_dict()[key], value, msg=key)


def test_modules_are_built_without_a_recipe() -> None:
    enc_cfg = EncoderConfig(cell="gru", embedding_size=6, hidden_size=5, layers=2, bidirectional=True)
    encoder = Encoder(vocab_size=20, config=enc_cfg)
    decoder = Decoder(
        vocab_size=20,
        memory_size=encoder.output_size,
        config=DecoderConfig(hidden_size=6, embedding_size=6, cell="gru"),
        attention=AttentionConfig(type="general"),
    )
    model = Seq2Seq(encoder, decoder)
    src, lengths = torch.tensor([[4, 5, 6], [7, 8, 0]]), torch.tensor([3, 2])
    assert model(src, lengths, torch.tensor([[1, 4], [1, 5]])).shape == (2, 2, 20)
    with pytest.raises(TypeError):
        Encoder(20, enc_cfg)  # type: ignore[misc]  # keyword-only


def test_no_attention_is_none() -> None:
    decoder = Decoder(
        vocab_size=10,
        memory_size=8,
        config=DecoderConfig(hidden_size=8, embedding_size=8),
        attention=AttentionConfig(type="none"),
    )
    assert decoder.attention is None and decoder.combine is None
    assert (
        Decoder(vocab_size=10, memory_size=8, config=DecoderConfig(hidden_size=8, embedding_size=8)).attention is None
    )
    assert build_attention(AttentionConfig(type="none"), query_size=8, memory_size=8) is None


def test_a_cell_factory_is_resolved_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from seq2seq_rnn.components import CELLS

    factory = CellFactory.resolve("lstm", {}, "model.encoder")
    calls: list[str] = []
    original = CELLS.get
    monkeypatch.setattr(CELLS, "get", lambda name: calls.append(name) or original(name))
    Encoder(vocab_size=10, config=EncoderConfig(hidden_size=4, embedding_size=4, layers=3), cell=factory)
    assert calls == [], "building the cells looked the name up again"


def test_dot_attention_sizes_are_checked_in_one_place() -> None:
    msg = r"'dot' needs decoder.hidden_size \(8\) to equal the encoder output size \(16"
    with pytest.raises(ConfigError, match=r"model\.attention\.type: " + msg):
        build_attention(AttentionConfig(type="dot"), query_size=8, memory_size=16)
    raw = {
        "encoder": {"hidden_size": 8},
        "decoder": {"hidden_size": 8, "embedding_size": 8},
        "attention": {"type": "dot"},
    }
    with pytest.raises(ValueError, match=msg):
        ModelConfig.model_validate(raw)
