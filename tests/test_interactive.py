"""``seq2seq-rnn translate`` on a terminal: a prompt with n-best lists; through a pipe, a plain filter."""

from __future__ import annotations

import os
import pty
import select
import sys
import time
from pathlib import Path

import pytest

from seq2seq_rnn.inference.translator import Translator
from seq2seq_rnn.interactive import Settings, command
from tests.helpers import ROOT, cli_env, run_cli

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")


class Terminal:
    """The CLI running on a pseudo-terminal."""

    def __init__(self, *args: str) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # child
            os.chdir(ROOT)
            os.execve(sys.executable, [sys.executable, "-m", "seq2seq_rnn.cli", *args], cli_env())
        self.pid, self.fd, self.buffer = pid, fd, b""

    def read_until(self, marker: bytes, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while marker not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {marker!r} within {timeout}s; got {self.buffer!r}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"the program ended before {marker!r}; got {self.buffer!r}")
                self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(marker)
        return head.decode("utf-8").replace("\r\n", "\n")

    def send(self, line: str) -> None:
        os.write(self.fd, line.encode("utf-8") + b"\n")

    def reply(self, line: str) -> list[str]:
        """Send a line; the lines printed before the next prompt (the echo of the input dropped)."""
        self.send(line)
        return [x for x in self.read_until(b"> ").split("\n") if x and x != line]

    def close(self) -> int:
        os.write(self.fd, b"\x04")  # Ctrl-D: end of input
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


def test_prompt_translates_and_shows_nbest(tiny_run: Path) -> None:
    translator = Translator.load(tiny_run)
    term = Terminal("translate", str(tiny_run), "--beam-size", "2")
    try:
        banner = term.read_until(b"> ")
        assert "beam 2, n-best 1" in banner and ":help" in banner
        sentence = "Ein Hund rennt über die Wiese."
        assert term.reply(sentence) == [translator.translate([sentence], beam_size=2)[0]]
        assert term.reply(":nbest 3") == ["beam 3, n-best 3"]
        shown = term.reply(sentence)
        hyps = translator.translate_nbest([sentence], beam_size=3, nbest=3)[0]
        assert len(shown) == len(hyps) == 3
        scores = []
        for rank, (line, hyp) in enumerate(zip(shown, hyps, strict=True), 1):
            number, score, *words = line.split(maxsplit=2) + [""]
            assert number == f"{rank}."
            assert abs(float(score) - hyp.score) < 1e-3
            assert line.endswith(translator.tokenizer.decode_target([hyp.tokens])[0])
            scores.append(float(score))
        assert scores == sorted(scores, reverse=True)
        assert term.reply(":beam x") == [":beam needs a whole number, e.g. :beam 5"]
        assert term.reply(":beam 1") == ["beam 1, n-best 1"]
        assert term.reply(sentence) == [translator.translate([sentence], beam_size=1)[0]]
    finally:
        code = term.close()
    assert code == 0


def test_pipe_stays_a_plain_filter(tiny_run: Path) -> None:
    proc = run_cli("translate", tiny_run, stdin=b"Ein Hund.\n\nZwei Katzen.\n")
    assert proc.returncode == 0, proc.stderr
    assert "> " not in proc.stdout
    assert proc.stdout.split("\n") == [*Translator.load(tiny_run).translate(["Ein Hund.", "", "Zwei Katzen."]), ""]


def test_commands() -> None:
    settings = Settings(beam_size=5)
    assert command(":nbest 8", settings) == "beam 8, n-best 8"
    assert command(":beam 2", settings) == "beam 2, n-best 2"
    assert command(":nbest 0", settings) == ":nbest must be at least 1"
    assert command(":quit", settings) is None
    assert "unknown command :foo" in (command(":foo", settings) or "")
