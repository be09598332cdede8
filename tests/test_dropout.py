"""Variational (locked) dropout: one mask per sequence, fresh per sequence, off at eval."""

from __future__ import annotations

import pytest
import torch

from seq2seq_rnn.nn.dropout import SequenceDropout


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
