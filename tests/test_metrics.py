"""Scores carry their sacrebleu signatures; identities and edge cases hold."""

from __future__ import annotations

import pytest
import sacrebleu

from seq2seq_rnn.metrics import Scores, score

REFS = ["A dog runs on the beach.", "Two men are playing soccer in a park.", "A woman reads a book."]


def test_identical_hypotheses_score_100():
    result = score(REFS, REFS)
    assert result.bleu == pytest.approx(100.0) and result.chrf == pytest.approx(100.0)
    assert result.n == 3


def test_signatures_name_tokenizer_and_version():
    result = score(REFS, REFS)
    assert "tok:13a" in result.bleu_signature and f"version:{sacrebleu.__version__}" in result.bleu_signature
    assert f"version:{sacrebleu.__version__}" in result.chrf_signature
    assert "case:lc" in score(REFS, REFS, tokenize="intl", lowercase=True).bleu_signature
    assert "tok:intl" in score(REFS, REFS, tokenize="intl").bleu_signature


def test_empty_hypotheses_score_zero():
    result = score(["", "", ""], REFS)
    assert result.bleu == 0.0 and result.chrf == 0.0


def test_partial_match_between_bounds_and_lowercase_helps():
    hyps = [r.upper() for r in REFS]
    assert score(hyps, REFS).bleu < score(hyps, REFS, lowercase=True).bleu == pytest.approx(100.0)
    assert 0.0 < score(["A dog runs on the sand.", *REFS[1:]], REFS).bleu < 100.0


def test_length_mismatch_is_a_value_error():
    with pytest.raises(ValueError, match="2 hypotheses but 3 references"):
        score(REFS[:2], REFS)
    with pytest.raises(ValueError, match="nothing to score"):
        score([], [])


def test_format_and_as_dict():
    result = score(REFS, REFS)
    assert isinstance(result, Scores)
    text = result.format()
    assert text.startswith("BLEU = 100.00  chrF = 100.00")
    assert f"bleu signature: {result.bleu_signature}" in text and f"chrf signature: {result.chrf_signature}" in text
    assert result.as_dict() == {
        "bleu": result.bleu,
        "chrf": result.chrf,
        "bleu_signature": result.bleu_signature,
        "chrf_signature": result.chrf_signature,
        "n": 3,
    }
