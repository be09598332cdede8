"""Search invariants on randomly initialised models (no training needed)."""

from __future__ import annotations

import pytest
import torch

from seq2seq_rnn.config import DecodeConfig, ModelConfig
from seq2seq_rnn.inference.decoding import decode_ids
from seq2seq_rnn.inference.search import beam_search, greedy_search, length_penalty, max_lengths, topk_rows
from seq2seq_rnn.model import Seq2Seq
from tests.search_reference import plain_beam_search, plain_greedy_search

BOS, EOS = 2, 3


def make_model(cell: str, input_feeding: bool, seed: int = 0, eos_bias: float = -2.0, peak: float = 1.0) -> Seq2Seq:
    """A seeded random model; ``peak`` > 1 sharpens its output distributions (varied hypothesis lengths)."""
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
        model.decoder.output.bias[EOS] += eos_bias
        model.decoder.output.weight.mul_(peak)
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
    greedy = greedy_search(model, src, lengths, caps=caps, bos=BOS, eos=EOS)
    beam = beam_search(model, src, lengths, caps=caps, bos=BOS, eos=EOS, beam_size=1, alpha=0.0)
    assert [h.tokens for h in greedy] == [hs[0].tokens for hs in beam]
    for g, b in zip(greedy, beam, strict=True):
        assert g.score == pytest.approx(b[0].score, abs=1e-4)


def test_nbest_is_sorted_and_within_caps() -> None:
    model = make_model("lstm", True)
    src, lengths = batch()
    caps = max_lengths(lengths, 1.0, 2)
    nbest = beam_search(model, src, lengths, caps=caps, bos=BOS, eos=EOS, beam_size=4, alpha=1.0, nbest=4)
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
    together = beam_search(model, src, lengths, caps=caps, bos=BOS, eos=EOS, beam_size=3)
    for i in range(src.size(0)):
        one = src[i : i + 1, : int(lengths[i])]
        alone = beam_search(model, one, lengths[i : i + 1], caps=caps[i : i + 1], bos=BOS, eos=EOS, beam_size=3)
        assert alone[0][0].tokens == together[i][0].tokens


def test_length_penalty_is_gnmt() -> None:
    assert float(length_penalty(torch.tensor(1), 1.0)) == pytest.approx(1.0)
    assert float(length_penalty(torch.tensor(7), 0.5)) == pytest.approx(2.0**0.5)
    assert float(length_penalty(torch.tensor(10), 0.0)) == 1.0


# -- live-work search == plain search -----------------------------------------
def ragged_batch(seed: int, size: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    """Sentences of lengths 1..9 in a random order, so they finish at different steps."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 10, (size,), generator=g)
    src = torch.randint(4, 30, (size, int(lengths.max())), generator=g)
    src[torch.arange(src.size(1)).unsqueeze(0) >= lengths.unsqueeze(1)] = 0
    return src, lengths


class Recorder:
    """A Decodable that records the rows each step decodes and the rows that get logits."""

    def __init__(self, model: Seq2Seq) -> None:
        self.model, self.steps = model, []

    def encode(self, src, lengths):  # noqa: ANN001, ANN201
        return self.model.encode(src, lengths)

    def decode_step(self, prev, state, memory, rows=None):  # noqa: ANN001, ANN201
        self.steps.append((prev.size(0), prev.size(0) if rows is None else rows.size(0)))
        return self.model.decode_step(prev, state, memory, rows)


def same_hypotheses(new: list, plain: list) -> None:
    assert [h.tokens for h in new] == [h.tokens for h in plain]
    assert [h.score for h in new] == pytest.approx([h.score for h in plain], abs=1e-5)
    for a, b in zip(new, plain, strict=True):
        assert (a.attention is None) == (b.attention is None)
        if a.attention is not None:
            torch.testing.assert_close(a.attention, b.attention)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("input_feeding", [True, False])
@pytest.mark.parametrize("attention", [False, True])
def test_shrinking_greedy_equals_plain_greedy(cell: str, input_feeding: bool, attention: bool) -> None:
    model = make_model(cell, input_feeding, seed=3)
    src, lengths = ragged_batch(seed=11)
    caps = max_lengths(lengths, 1.5, 2)
    recorder = Recorder(model)
    new = greedy_search(recorder, src, lengths, caps=caps, bos=BOS, eos=EOS, attention=attention)
    plain = plain_greedy_search(model, src, lengths, caps, BOS, EOS, attention)
    same_hypotheses(new, plain)
    sizes = [n for n, _ in recorder.steps]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < sizes[0]  # finished sentences left the batch


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("input_feeding", [True, False])
@pytest.mark.parametrize(("beam", "nbest"), [(3, 1), (4, 4)])
def test_shrinking_beam_equals_plain_beam(cell: str, input_feeding: bool, beam: int, nbest: int) -> None:
    model = make_model(cell, input_feeding, seed=5, eos_bias=1.0, peak=30.0)
    src, lengths = ragged_batch(seed=12)
    caps = max_lengths(lengths, 1.5, 3)
    new = beam_search(model, src, lengths, caps=caps, bos=BOS, eos=EOS, beam_size=beam, alpha=1.0, nbest=nbest)
    plain = plain_beam_search(model, src, lengths, caps, BOS, EOS, beam, 1.0, nbest)
    for a, b in zip(new, plain, strict=True):
        assert len(a) == nbest
        same_hypotheses(a, b)


def test_beam_search_does_only_live_work() -> None:
    model = make_model("gru", False, seed=5, eos_bias=1.0, peak=30.0)  # hypotheses end at varied steps
    src, lengths = ragged_batch(seed=12)
    caps = max_lengths(lengths, 1.5, 3)
    recorder = Recorder(model)
    new = beam_search(recorder, src, lengths, caps=caps, bos=BOS, eos=EOS, beam_size=3, nbest=3)
    for a, b in zip(new, plain_beam_search(model, src, lengths, caps, BOS, EOS, 3, 1.0, 3), strict=True):
        same_hypotheses(a, b)
    rows = [n for n, _ in recorder.steps]
    assert rows == sorted(rows, reverse=True) and rows[-1] < rows[0]  # finished sentences left the batch
    assert sum(live < n for n, live in recorder.steps) >= 3  # finished hypotheses got no output-layer work


def test_shrinking_beam_attention_equals_plain() -> None:
    model = make_model("lstm", True, seed=7, eos_bias=1.0, peak=30.0)
    src, lengths = ragged_batch(seed=13)
    caps = max_lengths(lengths, 1.5, 3)
    kwargs = {"beam_size": 3, "alpha": 0.6, "nbest": 3, "attention": True}
    new = beam_search(model, src, lengths, caps=caps, bos=BOS, eos=EOS, **kwargs)
    plain = plain_beam_search(model, src, lengths, caps, BOS, EOS, 3, 0.6, 3, True)
    for a, b in zip(new, plain, strict=True):
        same_hypotheses(a, b)


@pytest.mark.parametrize("beam", [1, 3])
def test_corpus_decoding_restores_input_order(beam: int) -> None:
    model = make_model("lstm", True, seed=8)
    g = torch.Generator().manual_seed(21)
    ids = [torch.randint(4, 30, (int(n),), generator=g).tolist() for n in torch.randint(0, 9, (13,), generator=g)]
    ids[4] = []  # an empty line gives no hypotheses
    settings = DecodeConfig(beam_size=beam, batch_size=4, max_length_ratio=1.5, max_length_offset=3)
    found = decode_ids(model, ids, settings, torch.device("cpu"), nbest=beam)
    assert found[4] == []
    for seq, hyps in zip(ids, found, strict=True):
        if not seq:
            continue
        src = torch.tensor([[*seq, EOS]])
        caps = max_lengths(torch.tensor([len(seq) + 1]), 1.5, 3)
        if beam == 1:
            alone = plain_greedy_search(model, src, torch.tensor([src.size(1)]), caps, 2, EOS)
        else:
            alone = plain_beam_search(model, src, torch.tensor([src.size(1)]), caps, 2, EOS, beam, 1.0, beam)[0]
        assert [h.tokens for h in hyps] == [h.tokens for h in alone]


@pytest.mark.parametrize(("vocab", "k"), [(6000, 5), (1000, 1), (600, 4), (130, 3), (4096, 12)])
def test_blockwise_topk_equals_topk(vocab: int, k: int) -> None:
    x = torch.randn(37, vocab, generator=torch.Generator().manual_seed(vocab)).log_softmax(-1)
    x[3] = float("-inf")
    x[3, 7] = 0.0  # a finished row: one finite value
    values, index = topk_rows(x, k)
    want = x.topk(k, dim=1)
    torch.testing.assert_close(values, want.values, rtol=0, atol=0)
    finite = torch.isfinite(want.values)
    assert torch.equal(index[finite], want.indices[finite])


def test_training_decodes_without_the_inference_facade() -> None:
    import subprocess
    import sys

    code = "import sys, seq2seq_rnn.training; print('seq2seq_rnn.inference.translator' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
