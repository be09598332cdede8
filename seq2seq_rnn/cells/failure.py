"""Which plugin cell failed: read from an exception's traceback, for a message a user can act on.

A plugin cell passes the contract check at build time and can still fail later, on real
shapes (training, translation, evaluation). The innermost ``RecurrentCell`` frame in the
traceback names the cell; its tensor arguments give the shapes of the failing call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, NamedTuple

from torch import Tensor

from seq2seq_rnn.cells.base import RecurrentCell
from seq2seq_rnn.components import CELLS
from seq2seq_rnn.config import ModelConfig
from seq2seq_rnn.errors import PluginError, Seq2SeqError
from seq2seq_rnn.registry import BUILTIN


class CellFailure(NamedTuple):
    side: str  # "encoder", "decoder" or "encoder or decoder"
    name: str  # the registered name (or the class name when no recipe name matches)
    origin: str  # BUILTIN or the distribution / module that registered it
    shapes: str  # "x (B, F), state ((B, H),)" of the failing call

    @property
    def is_plugin(self) -> bool:
        return self.origin != BUILTIN

    def describe(self, when: str, exc: BaseException) -> str:
        return (
            f"cell {self.name!r} (model.{self.side}.cell, from {self.origin}) failed {when}: "
            f"{type(exc).__name__}: {str(exc)[:500]}\n  shapes in the failing call: {self.shapes}"
        )


def failed_cell(exc: BaseException, model: ModelConfig) -> CellFailure | None:
    """The innermost recurrent cell in ``exc``'s traceback, or None if no cell was running."""
    frame_locals = None
    cell = None
    tb = exc.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if isinstance(owner, RecurrentCell):
            cell, frame_locals = owner, tb.tb_frame.f_locals
        tb = tb.tb_next
    if cell is None or frame_locals is None:
        return None
    named = dict(frame_locals)
    if isinstance(named.get("args"), tuple):  # a wrapper's (*args): name them by position
        named.update({f"arg{i}": value for i, value in enumerate(named.pop("args"))})
    shapes = ", ".join(f"{key} {shape}" for key, value in named.items() if (shape := _shape_of(value)))
    for side in ("encoder", "decoder"):
        name = getattr(model, side).cell
        cls = CELLS.get(name)
        if isinstance(cls, type) and isinstance(cell, cls):
            return CellFailure(side, name, CELLS.origin(name), shapes or "none recorded")
    return CellFailure("encoder or decoder", type(cell).__name__, "an unknown origin", shapes or "none recorded")


def plugin_error(exc: BaseException, model: ModelConfig, when: str, advice: str) -> PluginError | None:
    """The error that names a failing plugin cell (where it comes from, the shapes of the failing
    call) followed by ``advice``; None when no plugin cell failed (a failure of ours keeps its
    traceback). Training and the command line name failures through this one function."""
    found = failed_cell(exc, model)
    if found is None or not found.is_plugin:
        return None
    return PluginError(f"{found.describe(when, exc)}\n  {advice}")


@contextlib.contextmanager
def naming_plugin_cells(model: ModelConfig, when: str) -> Iterator[None]:
    """A plugin cell that fails inside the block (decoding, evaluating) becomes a PluginError naming it."""
    try:
        yield
    except (Seq2SeqError, KeyboardInterrupt):
        raise
    except Exception as exc:
        error = plugin_error(exc, model, when, "fix or replace the cell; the run is unchanged")
        if error is None:
            raise
        raise error from exc


def _shape_of(value: Any) -> str | None:
    if isinstance(value, Tensor):
        return str(tuple(value.shape))
    if isinstance(value, tuple) and value and all(isinstance(v, Tensor) for v in value):
        return "(" + ", ".join(str(tuple(v.shape)) for v in value) + ")"
    return None
