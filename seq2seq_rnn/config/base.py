"""What every recipe section shares: strictness and the bounds a real run could use."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# Upper bounds a real run could use; beyond them a value is a typo (or hostile), refused at validation.
MAX_COUNT = 10**9  # steps, epochs, patience, limits
MAX_WIDTH = 16_384  # embedding and hidden sizes
MAX_BEAM = 1024
MAX_WORKERS = 10_000
MAX_RECURRENT_PARAMETERS = 10**9  # what the sizes and layers of a model may add up to


class Section(BaseModel):
    """Base of every recipe section: unknown keys, type coercion, inf and nan are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def probability(default: float) -> Any:
    return Field(default=default, ge=0.0, lt=1.0)
