"""An interactive prompt for ``seq2seq-rnn translate`` on a terminal.

Each line typed is translated; commands start with ``:``::

    :beam N     beam size (1 = greedy)
    :nbest N    show the N best hypotheses with their scores (beam grows to N if smaller)
    :help       this list
    :quit       leave (Ctrl-D works too)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

from seq2seq_rnn.errors import Seq2SeqError
from seq2seq_rnn.inference.translator import Translator

HELP = """commands:
  :beam N    beam size (1 = greedy)
  :nbest N   show the N best hypotheses with their length-normalised log-probabilities
  :help      this list
  :quit      leave (Ctrl-D works too)"""


@dataclass
class Settings:
    beam_size: int
    nbest: int = 1

    def describe(self) -> str:
        return f"beam {self.beam_size}, n-best {self.nbest}"


def command(line: str, settings: Settings) -> str | None:
    """Apply a ``:`` command; returns what to print, or None to quit."""
    name, _, arg = line[1:].strip().partition(" ")
    if name in ("q", "quit", "exit"):
        return None
    if name in ("h", "help", ""):
        return HELP
    if name in ("beam", "nbest"):
        try:
            value = int(arg)
        except ValueError:
            return f":{name} needs a whole number, e.g. :{name} 5"
        if value < 1:
            return f":{name} must be at least 1"
        if name == "beam":
            settings.beam_size = value
            settings.nbest = min(settings.nbest, value)
        else:
            settings.nbest = value
            settings.beam_size = max(settings.beam_size, value)
        return settings.describe()
    return f"unknown command :{name}; {HELP}"


def render(translator: Translator, sentence: str, settings: Settings) -> str:
    """The translation, or the numbered n-best list with scores."""
    if settings.nbest == 1:
        return translator.translate([sentence], beam_size=settings.beam_size)[0]
    hyps = translator.translate_nbest([sentence], beam_size=settings.beam_size, nbest=settings.nbest)[0]
    lines = []
    for rank, hyp in enumerate(hyps, 1):
        text = translator.tokenizer.decode_target([hyp.tokens])[0]
        lines.append(f"{rank:>2}. {hyp.score:8.4f}  {text}")
    return "\n".join(lines)


def interact(translator: Translator, beam_size: int | None, stdin: TextIO, stdout: TextIO) -> int:
    """Read-translate-print until EOF or :quit."""
    settings = Settings(beam_size or translator.recipe.decode.beam_size)
    stdout.write(f"seq2seq-rnn: {settings.describe()}; :help for commands, Ctrl-D to leave\n")
    while True:
        stdout.write("> ")
        stdout.flush()
        line = stdin.readline()
        if not line:  # EOF
            stdout.write("\n")
            return 0
        line = line.strip()
        if not line:
            continue
        try:
            reply = command(line, settings) if line.startswith(":") else render(translator, line, settings)
        except Seq2SeqError as exc:  # e.g. a beam wider than the vocabulary: say so, keep the session
            reply = f"error: {exc}"
        if reply is None:
            return 0
        stdout.write(reply + "\n")
        stdout.flush()
