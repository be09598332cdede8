"""Translate a stream of lines, batch by batch: what ``seq2seq-rnn translate`` does with stdin.

The output keeps one line per input line, in input order (an empty line gives an empty line),
and comes a batch at a time, so that a caller who writes and flushes each batch keeps
everything translated so far when the process is interrupted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # the caller has loaded one; importing it here would pull torch into `plot`
    from seq2seq_rnn.inference.translator import Translator


@dataclass(frozen=True)
class StreamSettings:
    """Decoding settings of a stream; None keeps the recipe's ``decode.*`` value."""

    beam_size: int | None = None
    batch_size: int | None = None  # sentences per batch, also the unit of output


def read_lines(stream: TextIO) -> Iterator[str]:
    """The lines of ``stream`` without their line ends, read lazily."""
    return (line.rstrip("\r\n") for line in stream)


def output_line(translation: str) -> str:
    """A translation as one output line: a newline inside it would shift every later line."""
    return translation.replace("\n", " ") + "\n"


def chunks(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    """Consecutive lists of ``size`` lines (the last one shorter)."""
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def translate_stream(translator: Translator, lines: Iterable[str], settings: StreamSettings) -> Iterator[str]:
    """The output of each batch of ``lines`` (one ``output_line`` per input line, joined),
    in input order; a batch is read only when the previous one has been taken."""
    per_batch = settings.batch_size or translator.recipe.decode.batch_size
    for chunk in chunks(lines, per_batch):
        outs = translator.translate(chunk, beam_size=settings.beam_size, batch_size=settings.batch_size)
        yield "".join(output_line(out) for out in outs)
