"""Search invariants on randomly initialised models (no training needed)."""

from __future__ import annotations

import pytest
import torch

from seq2seq_rnn.config import ModelConfig
from seq2seq_rnn.model import Seq2Seq
from seq2seq_rnn.search import beam_search, greedy_search, length_penalty, max_lengths

BOS, EOS = 2, 3


def make_model(cell: str, input_feeding: bool, seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    cfg = ModelConfig.model_validate(
        {
            "encoder": {"cell": cell, "embedding_size": 12, "hidden_size": 16, "layers": 2},
            "decoder": {
                "cell": cell,
                "embedding_size": 16,
                "hidden_size": 16,
                "layers": 2,
                "input_feeding": input_feeding,
            },
        }
    )
    model = Seq2Seq.from_config(cfg, 30, 25).eval()
    with torch.no_grad():  # make EOS rare so hypotheses have varied lengths
        model.decoder.output.bias[EOS] -= 2.0
    return model


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([7, 3, 5, 1])
    src = torch.randint(4, 30, (4, 7), generator=g)
    src[torch.arange(7).unsqueeze(0) >= lengths.unsqueeze(1)] = 0
    return src, lengths


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("input_feeding", [True, False])
def test_beam_of_one_equals_greedy(cell: str, input_feeding: bool) -> None:
    model = make_model(cell, input_feeding)
    src, lengths = batch()
    caps = max_lengths(lengths, 1.5, 4)
    greedy = greedy_search(model, src, lengths, caps, BOS, EOS)
    beam = beam_search(model, src, lengths, caps, BOS, EOS, beam_size=1, alpha=0.0)
    assert [h.tokens for h in greedy] == [hs[0].tokens for hs in beam]
    for g, b in zip(greedy, beam, strict=True):
        assert g.score == pytest.approx(b[0].score, abs=1e-4)


def test_nbest_is_sorted_and_within_caps() -> None:
    model = make_model("lstm", True)
    src, lengths = batch()
    caps = max_lengths(lengths, 1.0, 2)
    nbest = beam_search(model, src, lengths, caps, BOS, EOS, beam_size=4, alpha=1.0, nbest=4)
    for hyps, cap in zip(nbest, caps.tolist(), strict=True):
        assert len(hyps) == 4
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert all(len(h.tokens) < cap for h in hyps)  # EOS counts towards the cap
        assert all(EOS not in h.tokens and BOS not in h.tokens for h in hyps)


def test_batched_search_equals_one_sentence_at_a_time() -> None:
    model = make_model("lstm", True, seed=4)
    src, lengths = batch(seed=6)
    caps = max_lengths(lengths, 1.5, 4)
    together = beam_search(model, src, lengths, caps, BOS, EOS, beam_size=3)
    for i in range(src.size(0)):
        alone = beam_search(model, src[i : i + 1, : int(lengths[i])], lengths[i : i + 1], caps[i : i + 1], BOS, EOS, 3)
        assert alone[0][0].tokens == together[i][0].tokens


def test_length_penalty_is_gnmt() -> None:
    assert float(length_penalty(torch.tensor(1), 1.0)) == pytest.approx(1.0)
    assert float(length_penalty(torch.tensor(7), 0.5)) == pytest.approx(2.0**0.5)
    assert float(length_penalty(torch.tensor(10), 0.0)) == 1.0
