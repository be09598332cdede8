"""Error messages about recipes: pydantic's errors as dotted paths with 'did you mean' hints,
and short echoes of user input."""

from __future__ import annotations

import reprlib
from typing import Any, get_args, get_origin

import pydantic
from pydantic import BaseModel

from seq2seq_rnn.config.schema import Recipe
from seq2seq_rnn.registry import did_you_mean


def shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[: limit - 25]}… ({len(text):,} characters)"


ECHO = reprlib.Repr()  # echoes of user input in messages: a few elements, a few dozen characters
ECHO.maxstring = ECHO.maxother = ECHO.maxlong = 60
ECHO.maxlist = ECHO.maxdict = ECHO.maxset = ECHO.maxtuple = 5
ECHO.maxlevel = 2


def _section_fields(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the section at ``loc`` (for 'did you mean' hints)."""
    model: Any = Recipe
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return []
        annotation = field.annotation
        if get_origin(annotation) is not None:  # X | None
            annotation = next((a for a in get_args(annotation) if isinstance(a, type)), None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)


def format_validation_error(exc: pydantic.ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if p not in ("function-after",))
        path = shorten(".".join(str(p) for p in loc)) or "<recipe>"
        if err["type"] == "extra_forbidden":
            valid = _section_fields(loc[:-1])
            hint = did_you_mean(str(loc[-1]), valid) if len(str(loc[-1])) <= 80 else ""
            lines.append(f"{path}: unknown key{hint}. Valid keys: {', '.join(valid)}")
            continue
        if err["type"] == "cell_options":  # the cell's own options model: one line per option, dotted
            valid = err["ctx"]["valid"]
            for sub in err["ctx"]["errors"]:
                where = shorten(".".join(str(p) for p in (*loc, "cell_options", *sub["loc"])))
                if sub["type"] == "extra_forbidden":
                    hint = did_you_mean(str(sub["loc"][-1]), valid) if len(str(sub["loc"][-1])) <= 80 else ""
                    lines.append(
                        f"{where}: unknown option of cell {err['ctx']['cell']!r}{hint}. "
                        f"Valid options: {', '.join(valid) or 'none'}"
                    )
                    continue
                got = f" (got {ECHO.repr(sub['input'])})" if sub["type"] not in ("missing",) else ""
                lines.append(f"{where}: {shorten(sub['msg'], 600)}{got}")
            continue
        message = shorten(err["msg"].removeprefix("Value error, "), 600)  # it may quote the input
        got = f" (got {ECHO.repr(err['input'])})" if err["type"] not in ("missing", "value_error") else ""
        lines.append(f"{path}: {message}{got}")
    return f"{source}: invalid recipe\n  " + "\n  ".join(lines)
