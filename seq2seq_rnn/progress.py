"""Progress display: a bar with rate and ETA on a terminal, nothing otherwise."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def on_terminal() -> bool:
    return sys.stderr.isatty()


def progress(items: Iterable[T], total: int, desc: str, unit: str = "it") -> Iterator[T]:
    """``items`` with a tqdm bar on stderr when it is a terminal; plain otherwise."""
    if not on_terminal() or total <= 1:
        yield from items
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr) as bar:
        for item in items:
            yield item
            bar.update(1)
