"""Optional integrations with other frameworks.

Each one lives in its own subpackage and is the only place that imports its
framework; this module imports none of them, so the CLI can check what is
installed and build the settings without paying for (or needing) the import.
"""

from __future__ import annotations

import importlib.util

import pydantic

from seq2seq_rnn.config import Recipe, ScalingConfig, format_validation_error
from seq2seq_rnn.errors import ConfigError


def require_ray(what: str) -> None:
    """A clear error if Ray is absent (``what``: the option or command that needs it)."""
    if importlib.util.find_spec("ray") is None:
        raise ConfigError(f"{what} needs Ray, which is not installed. Install it with: pip install 'seq2seq_rnn[ray]'")


def with_scaling(
    recipe: Recipe,
    workers: int | None = None,
    gpus_per_worker: float | None = None,
    address: str | None = None,
) -> Recipe:
    """The recipe with its ``scaling:`` section overridden by command-line values (None = keep)."""
    given = {"workers": workers, "gpus_per_worker": gpus_per_worker, "address": address}
    update = {key: value for key, value in given.items() if value is not None}
    if not update:
        return recipe
    try:
        scaling = ScalingConfig.model_validate({**recipe.scaling.model_dump(), **update})
    except pydantic.ValidationError as exc:
        message = format_validation_error(exc, "command line")
        raise ConfigError(message.replace("invalid recipe", "invalid scaling option")) from None
    return recipe.model_copy(update={"scaling": scaling})


def uses_ray(recipe: Recipe) -> bool:
    """Whether training this recipe goes through Ray (more than one worker, or a cluster address)."""
    return recipe.scaling.workers > 1 or recipe.scaling.address is not None
