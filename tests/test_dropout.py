"""Variational (locked) dropout: one mask per sequence, fresh per sequence, off at eval."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import Tensor

from seq2seq_rnn.components import CELLS, register_cell
from seq2seq_rnn.config import ModelConfig
from seq2seq_rnn.model import Seq2Seq
from seq2seq_rnn.nn.dropout import SequenceDropout
from tests.helpers import load_layernorm_cell


def test_variational_keeps_one_mask_across_time() -> None:
    torch.manual_seed(0)
    drop = SequenceDropout(0.5, "variational").train()
    out = drop(torch.ones(8, 20, 16))  # (B, T, D)
    dropped = out == 0
    assert dropped.any() and not dropped.all()
    assert torch.equal(dropped, dropped[:, :1].expand_as(dropped)), "a unit is dropped at every step or none"
    assert torch.allclose(out[~dropped], torch.tensor(2.0)), "kept units are scaled by 1/(1-p)"


def test_variational_draws_a_fresh_mask_per_sequence_and_per_call() -> None:
    torch.manual_seed(0)
    drop = SequenceDropout(0.5, "variational").train()
    first = drop(torch.ones(8, 5, 64))[:, 0]  # (B, D)
    second = drop(torch.ones(8, 5, 64))[:, 0]
    assert not torch.equal(first[0], first[1]), "two sequences of a batch share a mask"
    assert not torch.equal(first, second), "a new batch reused the previous masks"


def test_standard_mode_varies_over_time() -> None:
    torch.manual_seed(0)
    out = SequenceDropout(0.5, "standard").train()(torch.ones(4, 20, 16))
    dropped = out == 0
    assert not torch.equal(dropped, dropped[:, :1].expand_as(dropped))


@pytest.mark.parametrize("mode", ["standard", "variational"])
def test_identity_at_eval_time(mode: str) -> None:
    drop = SequenceDropout(0.5, mode).eval()
    x = torch.randn(3, 7, 5)
    assert torch.equal(drop(x), x)
    assert drop.sample_mask(3, 5, x) is None


def test_step_mask_equals_sequence_mask() -> None:
    """The step-by-step path (input feeding) applies the same mask as the whole-sequence path."""
    torch.manual_seed(0)
    drop = SequenceDropout(0.3, "variational").train()
    x = torch.randn(4, 6, 10)
    mask = drop.sample_mask(4, 10, x)
    assert mask is not None
    steps = torch.stack([drop(x[:, t], mask) for t in range(6)], dim=1)
    assert torch.equal(steps, drop(x, mask))
    assert torch.equal(steps, x * mask.unsqueeze(1))


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="variational"):
        SequenceDropout(0.1, "locked")  # type: ignore[arg-type]


# ------------------------------------------------------------------ in the model
@pytest.fixture(scope="module")
def plugin_cell() -> Iterator[str]:
    register_cell("test_variational_layernorm", load_layernorm_cell())
    yield "test_variational_layernorm"
    CELLS.unregister("test_variational_layernorm")


def variational_model(cell: str, input_feeding: bool) -> Seq2Seq:
    enc = {"cell": cell, "embedding_size": 12, "hidden_size": 10, "layers": 2, "dropout": 0.5}
    dec = {
        **enc,
        "input_feeding": input_feeding,
        "output_dropout": 0.5,
        "embedding_dropout": 0.5,
        "tie_embeddings": False,
    }
    cfg = ModelConfig.model_validate(
        {"encoder": {**enc, "dropout_mode": "variational"}, "decoder": {**dec, "dropout_mode": "variational"}}
    )
    torch.manual_seed(0)
    return Seq2Seq.from_config(cfg, 30, 30)


def record_masks(module: SequenceDropout) -> list[Tensor | None]:
    seen: list[Tensor | None] = []
    original = module.forward

    def forward(x: Tensor, mask: Tensor | None = None) -> Tensor:
        seen.append(mask)
        return original(x, mask)

    module.forward = forward  # type: ignore[method-assign]
    return seen


@pytest.mark.parametrize("cell", ["lstm", "gru", "plugin"])
def test_step_by_step_decoder_reuses_one_mask_per_sequence(cell: str, plugin_cell: str) -> None:
    """With input feeding the decoder runs step by step in training: every step gets the
    same (B, ·) mask object for the embedding, each layer and the output layer."""
    model = variational_model(plugin_cell if cell == "plugin" else cell, input_feeding=True).train()
    seen = {name: record_masks(getattr(model.decoder, name)) for name in ("embedding_dropout", "output_dropout")}
    layers = record_masks(model.decoder.dropout)
    src, tgt = torch.randint(1, 30, (4, 7)), torch.randint(1, 30, (4, 5))
    logits = model(src, torch.tensor([7, 6, 5, 3]), tgt)
    logits.sum().backward()  # gradients flow through the masks
    for masks in seen.values():
        assert len(masks) == 5 and masks[0] is not None and all(m is masks[0] for m in masks)
    assert len(layers) == 5 * 2 and layers[0] is not layers[1]  # a mask per layer …
    assert all(m is layers[t % 2] for t, m in enumerate(layers))  # … kept for every step
    assert all(p.grad is not None for p in model.decoder.cells.parameters())


@pytest.mark.parametrize("input_feeding", [False, True])
def test_variational_model_is_deterministic_at_eval_and_trains(input_feeding: bool, plugin_cell: str) -> None:
    model = variational_model(plugin_cell, input_feeding)
    src, lengths, tgt = torch.randint(1, 30, (3, 6)), torch.tensor([6, 4, 2]), torch.randint(1, 30, (3, 4))
    model.eval()
    assert torch.equal(model(src, lengths, tgt), model(src, lengths, tgt))
    model.train()
    first, second = model(src, lengths, tgt), model(src, lengths, tgt)
    assert not torch.equal(first, second), "dropout is on in training"
    first.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_standard_mode_is_elementwise_dropout() -> None:
    """The default mode drops each element with probability p and scales the rest by 1/(1-p), like
    nn.Dropout; its masks come from uniform numbers (faster than nn.Dropout's bernoulli_, issue 22),
    so the same seed gives the same mask, in fp32 and bf16 alike."""
    x = torch.randn(64, 50, 40)
    torch.manual_seed(3)
    ours = SequenceDropout(0.4).train()(x)
    kept = ours != 0
    assert abs(kept.float().mean().item() - 0.6) < 0.01
    assert torch.allclose(ours[kept], x[kept] / 0.6)
    torch.manual_seed(3)
    assert torch.equal(SequenceDropout(0.4).train()(x), ours)
    torch.manual_seed(3)
    half = SequenceDropout(0.4).train()(x.bfloat16())
    assert half.dtype == torch.bfloat16 and torch.equal(half != 0, kept)
