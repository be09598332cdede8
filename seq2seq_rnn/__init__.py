"""seq2seq_rnn: neural machine translation with deep recurrent encoder–decoder models.

Public API (imported lazily so that ``import seq2seq_rnn`` stays light)::

    from seq2seq_rnn import Translator, RecurrentCell, register_cell
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from seq2seq_rnn.components import register_attention, register_cell
from seq2seq_rnn.config import Recipe, load_recipe
from seq2seq_rnn.errors import CheckpointError, ConfigError, DataError, PluginError, Seq2SeqError, UsageError

if TYPE_CHECKING:
    from seq2seq_rnn.cells.base import RecurrentCell
    from seq2seq_rnn.inference.translator import Translator

__version__ = "0.1.0"
__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "PluginError",
    "Recipe",
    "RecurrentCell",
    "Seq2SeqError",
    "Translator",
    "UsageError",
    "load_recipe",
    "register_attention",
    "register_cell",
]

_LAZY = {"RecurrentCell": "seq2seq_rnn.cells.base", "Translator": "seq2seq_rnn.inference.translator"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'seq2seq_rnn' has no attribute {name!r}")
