"""A cell's ``cell_options``: the one place they are checked and a rejection is worded.

The recipe checks them when it is loaded (``schema.py``, as one dotted line per option);
the cell factory checks them again when it builds a model from a config made in Python,
and words a cell constructor's own refusal the same way (``cells/__init__.py``).
Both call the functions below. No torch here: a cell class is only inspected.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from seq2seq_rnn.errors import ConfigError


class CellOptions(BaseModel):
    """Base of a cell's options model (``RecurrentCell.options_model``): unknown keys
    and type coercion are errors, as everywhere else in a recipe."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def validate_cell_options(cell_cls: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` checked against ``cell_cls.options_model`` when the cell declares one
    (raises pydantic.ValidationError); returned unchanged otherwise (pass-through)."""
    model = getattr(cell_cls, "options_model", None)
    if model is None:
        return dict(options)
    return model.model_validate(dict(options)).model_dump()


def accepted_options(cls: type) -> list[str]:
    """Names of the keyword options a cell class takes (its options model's fields, else ``__init__``'s)."""
    model = getattr(cls, "options_model", None)
    if model is not None:
        return list(model.model_fields)
    params = inspect.signature(cls.__init__).parameters.values()
    named = (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) if (p := next(iter(params), None)) else ()
    return [q.name for q in params if q.kind in named and q.name not in ("self", "input_size", "hidden_size")]


def rejected_options(
    path: str, name: str, origin: str, cell_cls: type, options: Mapping[str, Any], exc: Exception
) -> ConfigError:
    """The error of a cell that refused ``options`` (its options model or its constructor did)."""
    accepted = ", ".join(accepted_options(cell_cls)) or "none"
    return ConfigError(
        f"{path}.cell_options: cell {name!r} ({origin}) rejected {dict(options)!r}: {exc}. Accepted options: {accepted}"
    )


def check_cell_options(path: str, name: str, origin: str, cell_cls: type, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options a cell's constructor gets (its options model's defaults filled in), or a ConfigError."""
    try:
        return validate_cell_options(cell_cls, options)
    except ValueError as exc:  # a pydantic.ValidationError of the cell's options model
        raise rejected_options(path, name, origin, cell_cls, options, exc) from None
