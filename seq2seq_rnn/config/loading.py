"""Loading a recipe: read (bounded), parse (safe YAML), override, resolve paths, validate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic

from seq2seq_rnn.config.messages import format_validation_error
from seq2seq_rnn.config.overrides import apply_overrides, resolve_paths
from seq2seq_rnn.config.safe_yaml import MAX_RECIPE_BYTES, parse_yaml
from seq2seq_rnn.config.schema import DEFER_UNKNOWN_COMPONENTS, Recipe
from seq2seq_rnn.errors import ConfigError
from seq2seq_rnn.registry import import_recipe_plugins


def require_mapping(raw: Any, source: str) -> None:
    """The one check that a recipe is a non-empty mapping (a file, or a dict from a Ray worker)."""
    if raw is None:
        raise ConfigError(f"{source}: the recipe is empty")
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a recipe must be a mapping of sections, got {type(raw).__name__}")


def validate_recipe(raw: Any, source: str = "<recipe>") -> Recipe:
    """Validate ``raw``; its ``plugins:`` are imported only with the user's consent.

    With plugins named, everything else is validated first (component names the plugins
    may add are left for later), then the plugins are imported or refused
    (:func:`~seq2seq_rnn.registry.import_recipe_plugins`), then the whole recipe is checked.
    """
    require_mapping(raw, source)
    plugins = raw.get("plugins")
    if isinstance(plugins, list) and plugins and all(isinstance(p, str) for p in plugins):
        _validate(raw, source, {DEFER_UNKNOWN_COMPONENTS: True})
        import_recipe_plugins(plugins, source)
    return _validate(raw, source, None)


def _validate(raw: dict[str, Any], source: str, context: dict[str, Any] | None) -> Recipe:
    try:
        return Recipe.model_validate(raw, context=context)
    except pydantic.ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe file; data paths become absolute."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder, not a recipe file")
    try:
        with path.open(encoding="utf-8") as handle:  # a bounded read: the path may be a device or a FIFO
            text = handle.read(MAX_RECIPE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such recipe file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the recipe: {exc}") from None
    raw = parse_yaml(text, str(path))
    require_mapping(raw, str(path))
    raw = apply_overrides(raw, overrides or [])
    raw = resolve_paths(raw, path.resolve().parent)
    return validate_recipe(raw, str(path))
