"""Recurrent cells: the contract, the built-ins and the factory used by models."""

from __future__ import annotations

from typing import Any

from seq2seq_rnn.cells.base import RecurrentCell, State, accepted_options, check_cell_instance
from seq2seq_rnn.components import CELLS, register_cell
from seq2seq_rnn.errors import ConfigError, PluginError

__all__ = ["CELLS", "RecurrentCell", "State", "build_cell", "register_cell"]

_checked: set[type] = set()


def build_cell(name: str, input_size: int, hidden_size: int, options: dict[str, Any], path: str) -> RecurrentCell:
    """Instantiate the cell registered as ``name``; ``path`` is the recipe key
    (e.g. ``model.encoder``) used in error messages."""
    cls = CELLS.get(name)
    origin = CELLS.origin(name)
    try:
        cell = cls(input_size, hidden_size, **options)
    except (ConfigError, TypeError, ValueError) as exc:
        accepted = ", ".join(accepted_options(cls)) or "none"
        raise ConfigError(
            f"{path}.cell_options: cell {name!r} ({origin}) rejected {options!r}: {exc}. Accepted options: {accepted}"
        ) from None
    except PluginError:
        raise
    except Exception as exc:
        raise PluginError(f"cell {name!r} from {origin} failed to construct: {type(exc).__name__}: {exc}") from exc
    if cls not in _checked:
        check_cell_instance(name, origin, cell)
        _checked.add(cls)
    return cell
