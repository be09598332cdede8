"""Recurrent cells: the contract, the built-ins and the factory used by models."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from seq2seq_rnn.cells.base import RecurrentCell, State, check_cell_instance
from seq2seq_rnn.components import CELLS, register_cell
from seq2seq_rnn.config.cell_options import check_cell_options, rejected_options
from seq2seq_rnn.errors import ConfigError, PluginError, describe_exit

__all__ = ["CELLS", "CellFactory", "RecurrentCell", "State", "build_cell", "register_cell"]

_checked: set[type] = set()


@dataclass(frozen=True)
class CellFactory:
    """A registered cell resolved once: its class, where it comes from and its
    validated options. Calling it builds one cell: ``factory(input_size, hidden_size)``.

    ``path`` is the recipe key (e.g. ``model.encoder``) used in error messages.
    """

    name: str
    cls: type[RecurrentCell]
    origin: str
    options: Mapping[str, Any] = field(default_factory=dict)
    path: str = "model"

    @classmethod
    def resolve(cls, name: str, options: Mapping[str, Any] | None = None, path: str = "model") -> CellFactory:
        cell_cls = CELLS.get(name)
        origin = CELLS.origin(name)
        checked = check_cell_options(path, name, origin, cell_cls, options or {})
        return cls(name, cell_cls, origin, checked, path)

    def __call__(self, input_size: int, hidden_size: int) -> RecurrentCell:
        self._check_signature()
        try:
            cell = self.cls(input_size, hidden_size, **self.options)
        except SystemExit as exc:
            raise PluginError(
                f"cell {self.name!r} from {self.origin}: {self.cls.__name__}.__init__ raised {describe_exit(exc)} "
                "while constructing; a plugin must raise an exception, not exit"
            ) from None
        except AttributeError as exc:
            if "before Module.__init__() call" not in str(exc):
                raise self._failed(exc) from exc
            raise PluginError(
                f"cell {self.name!r} from {self.origin}: {self.cls.__name__}.__init__ assigns a submodule or "
                f"parameter before the module is initialised ({exc}); call "
                f"super().__init__(input_size, hidden_size) first in {self.cls.__name__}.__init__"
            ) from None
        except (ConfigError, TypeError, ValueError) as exc:  # the constructor's own refusal, worded the same
            raise rejected_options(self.path, self.name, self.origin, self.cls, self.options, exc) from None
        except PluginError:
            raise
        except Exception as exc:
            raise self._failed(exc) from exc
        for attr, size in (("input_size", input_size), ("hidden_size", hidden_size)):
            if getattr(cell, attr, None) is None:  # nn.Module.__init__(self) called instead of ours
                setattr(cell, attr, size)
        if self.cls not in _checked:
            check_cell_instance(self.name, self.origin, cell)
            _checked.add(self.cls)
        return cell

    def _failed(self, exc: Exception) -> PluginError:
        return PluginError(f"cell {self.name!r} from {self.origin} failed to construct: {type(exc).__name__}: {exc}")

    def _check_signature(self) -> None:
        """The factory calls ``cls(input_size, hidden_size, **options)``: say so if ``__init__`` cannot take that."""
        try:
            signature = inspect.signature(self.cls.__init__)
        except (TypeError, ValueError):
            return
        try:
            signature.bind(None, 1, 1)
        except TypeError:
            name = self.cls.__name__
            raise PluginError(
                f"cell {self.name!r} from {self.origin}: {name}.__init__{signature} cannot take the sizes; "
                f"change it to def __init__(self, input_size, hidden_size, ...): the model builds every cell as "
                f"{name}(input_size, hidden_size, **cell_options)"
            ) from None


def build_cell(name: str, input_size: int, hidden_size: int, options: dict[str, Any], path: str) -> RecurrentCell:
    """One cell of the kind registered as ``name`` (resolves the name each call;
    models resolve a :class:`CellFactory` once instead)."""
    return CellFactory.resolve(name, options, path)(input_size, hidden_size)
