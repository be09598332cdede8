"""Loading a recipe: read (bounded), parse (safe YAML), override, resolve paths, validate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic

from seq2seq_rnn.config.messages import format_validation_error
from seq2seq_rnn.config.overrides import apply_overrides, resolve_paths
from seq2seq_rnn.config.safe_yaml import MAX_RECIPE_BYTES, parse_yaml
from seq2seq_rnn.config.schema import Recipe
from seq2seq_rnn.errors import ConfigError
from seq2seq_rnn.registry import import_modules


def require_mapping(raw: Any, source: str) -> None:
    """The one check that a recipe is a non-empty mapping (a file, or a dict from a Ray worker)."""
    if raw is None:
        raise ConfigError(f"{source}: the recipe is empty")
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a recipe must be a mapping of sections, got {type(raw).__name__}")


def validate_recipe(raw: Any, source: str = "<recipe>") -> Recipe:
    require_mapping(raw, source)
    plugins = raw.get("plugins")
    if isinstance(plugins, list) and all(isinstance(p, str) for p in plugins):  # else validation says what is wrong
        import_modules(plugins, f"{source}: plugins")
    try:
        return Recipe.model_validate(raw)
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
