"""inference/stream.py: what ``translate`` writes for a stream of stdin lines (tests/test_no_work_lost.py
checks the CLI around it: flushing, SIGTERM)."""

from __future__ import annotations

import io
from pathlib import Path

from seq2seq_rnn.inference.stream import StreamSettings, chunks, read_lines, translate_stream
from seq2seq_rnn.inference.translator import Translator

LINES = ["Ein Hund läuft.", "", "Zwei Männer spielen Fußball.", "Eine Frau liest.", "", "Ein Kind."]


def test_chunks_keep_order_and_the_short_tail() -> None:
    assert list(chunks(iter("abcde"), 2)) == [["a", "b"], ["c", "d"], ["e"]]
    assert list(chunks(iter([]), 3)) == []


def test_read_lines_drops_line_ends_only() -> None:
    stream = io.StringIO("one\r\n\n  two  \nlast")
    assert list(read_lines(stream)) == ["one", "", "  two  ", "last"]


def test_the_stream_gives_one_line_per_input_batch_by_batch(tiny_run: Path) -> None:
    translator = Translator.load(tiny_run, device="cpu")
    batches = list(translate_stream(translator, iter(LINES), StreamSettings(beam_size=2, batch_size=4)))
    assert len(batches) == 2  # 6 lines in batches of 4
    lines = "".join(batches).split("\n")
    assert lines[-1] == "" and len(lines) - 1 == len(LINES)
    assert lines[:-1] == translator.translate(LINES, beam_size=2, batch_size=4)  # same text, input order
    assert lines[1] == "" and lines[4] == ""  # an empty line gives an empty line


def test_a_batch_is_read_only_when_the_previous_one_is_taken(tiny_run: Path) -> None:
    translator = Translator.load(tiny_run, device="cpu")
    read: list[str] = []

    def lines():
        for line in LINES:
            read.append(line)
            yield line

    outputs = translate_stream(translator, lines(), StreamSettings(beam_size=1, batch_size=2))
    assert read == []
    first = next(outputs)
    assert read == LINES[:2] and first.count("\n") == 2  # a reader at a prompt gets answers as it types
