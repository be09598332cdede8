"""Shared by the Serve tests: a free port, source sentences, an HTTP client with the API key."""

from __future__ import annotations

import gzip
import socket
from pathlib import Path
from typing import Any

from tests.helpers import ROOT

KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sources(count: int, skip: int = 0) -> list[str]:
    """Multi30k validation sentences (German), the first ``count`` after ``skip``."""
    with gzip.open(ROOT / "data" / "multi30k" / "val.de.gz", "rt", encoding="utf-8") as handle:
        lines = [line.rstrip("\n") for line in handle]
    return lines[skip : skip + count]


def expected(run: Path, sentences: list[str], beam: int, nbest: int = 1) -> list[list[tuple[str, float]]]:
    """In-process n-best (text, score) lists through the public Translator API."""
    import torch

    from seq2seq_rnn.inference.translator import Translator

    torch.set_num_threads(1)
    translator = Translator.load(run)
    found = translator.translate_nbest(sentences, beam_size=beam, nbest=nbest)
    return [[(translator.tokenizer.decode_target([h.tokens])[0], h.score) for h in hyps] for hyps in found]


def same(served: list[dict[str, Any]], want: list[tuple[str, float]]) -> bool:
    return [h["text"] for h in served] == [t for t, _ in want] and all(
        abs(h["score"] - s) < 1e-3 for h, (_, s) in zip(served, want, strict=True)
    )
