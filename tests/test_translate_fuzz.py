"""Property tests of translation input: arbitrary unicode, empty and whitespace-only
lines, very long lines. No crash, one output per input, bounded output length and decoding work."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seq2seq_rnn import Translator

EXAMPLES = 40  # per property; the two properties run in well under 30 s together
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=False)

whitespace = st.text(alphabet=" \t\r\n\u00a0\u2003\u3000\u200b\ufeff", max_size=12)
long_line = st.builds(lambda piece, n: piece * n, st.text(min_size=1, max_size=12), st.integers(200, 4000))
sentence = st.one_of(st.just(""), whitespace, st.text(max_size=60), long_line)


@pytest.fixture(scope="module")
def translator(tiny_run: Path) -> Translator:
    return Translator.load(tiny_run, device="cpu")


def token_cap(translator: Translator) -> int:
    """The most target tokens any input may produce: the source is cut to max_source_length (+EOS)."""
    dec = translator.recipe.decode
    return int((translator.max_source_length + 1) * dec.max_length_ratio) + dec.max_length_offset


@FUZZ
@given(lines=st.lists(sentence, max_size=8), beam=st.sampled_from([1, 2, 3]))
def test_any_input_gives_one_bounded_output_per_line(translator, lines, beam):
    model, steps = translator.model, [0]

    def counting_step(*args, **kwargs):
        steps[0] += 1
        return type(model).decode_step(model, *args, **kwargs)

    model.decode_step = counting_step  # an instance attribute: search calls it
    try:
        out = translator.translate(lines, beam_size=beam, batch_size=3)
    finally:
        del model.decode_step
    # no runaway decoding: each batch of at most 3 sentences stops by the cap (+1 for the forced EOS)
    batches = -(-sum(1 for line in lines if line.strip()) // 3)
    assert steps[0] <= batches * (token_cap(translator) + 1)
    assert len(out) == len(lines)
    assert all(isinstance(line, str) for line in out)
    for text, translation in zip(lines, out, strict=True):
        if not text.strip():
            assert translation == "", "an empty or blank line must give an empty line"
        assert len(translation) <= 16 * token_cap(translator)  # a subword decodes to at most a few chars


@FUZZ
@given(lines=st.lists(sentence, min_size=1, max_size=6), nbest=st.integers(1, 3))
def test_hypotheses_respect_the_length_cap(translator, lines, nbest):
    results = translator.translate_nbest(lines, beam_size=3, nbest=nbest)
    assert len(results) == len(lines)
    cap = token_cap(translator)
    for text, hyps in zip(lines, results, strict=True):
        assert (hyps == []) == (not text.strip()) or not translator._encode([text])[0]
        assert len(hyps) <= nbest
        assert all(len(h.tokens) <= cap for h in hyps)


def test_cli_keeps_the_line_count_with_empty_lines_and_invalid_utf8(tiny_run, cli):
    stdin = b"ein Hund\n\n   \n\xff\xfe kaputt \xc3\n\t\nzwei Katzen\r\n\xe2\x80\xa8\nletzte Zeile ohne Zeilenende"
    proc = cli("translate", tiny_run, "--device", "cpu", "--beam-size", "2", stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    assert lines[-1] == "" and len(lines) - 1 == stdin.count(b"\n") + 1  # one per input line, last unterminated
    assert lines[1] == lines[2] == lines[4] == "", "blank input lines must stay blank"


def test_cli_a_lone_carriage_return_does_not_split_a_line(tiny_run, cli):
    stdin = b"ein Hund\rzwei Katzen\nnoch eine\n"
    proc = cli("translate", tiny_run, "--device", "cpu", "--beam-size", "1", stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 2
