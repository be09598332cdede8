"""Progress bars appear on a terminal only."""

from __future__ import annotations

import io
import sys

import pytest

from seq2seq_rnn.progress_bar import progress


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_bar_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert list(progress(range(5), 5, "work")) == [0, 1, 2, 3, 4]
    assert err.getvalue() == ""


def test_bar_with_rate_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    err = FakeTTY()
    monkeypatch.setattr(sys, "stderr", err)
    assert list(progress(range(5), 5, "work", unit="batch")) == [0, 1, 2, 3, 4]
    shown = err.getvalue()
    assert "work" in shown and "5/5" in shown and "batch/s" in shown
