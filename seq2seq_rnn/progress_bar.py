"""Progress bars: a bar with rate and ETA on a terminal, nothing otherwise (the one place
bars are made: decoding's batches, training's steps). Training's counters are
``training.state.Progress``; this module only displays."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def on_terminal() -> bool:
    return sys.stderr.isatty()


def progress(items: Iterable[T], total: int, desc: str, unit: str = "it") -> Iterator[T]:
    """``items`` with a tqdm bar on stderr when it is a terminal; plain otherwise."""
    if not on_terminal() or total <= 1:
        yield from items
        return
    with terminal_bar(total, desc=desc, unit=unit) as bar:
        for item in items:
            yield item
            bar.update(1)


def terminal_bar(total: int | None, initial: int = 0, desc: str | None = None, unit: str = "it") -> Any:
    """A tqdm bar on stderr (call only when :func:`on_terminal`)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr)
