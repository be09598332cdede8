"""``--set KEY=VALUE`` overrides and paths relative to the recipe's folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seq2seq_rnn.config.messages import ECHO, shorten
from seq2seq_rnn.config.safe_yaml import parse_yaml
from seq2seq_rnn.errors import ConfigError


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"model.encoder.cell=gru"`` → (["model", "encoder", "cell"], "gru")."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip() or any(not p for p in key.strip().split(".")):
        raise ConfigError(f"--set {ECHO.repr(item)}: expected KEY=VALUE with a dotted KEY, e.g. train.max_steps=200")
    return key.strip().split("."), parse_yaml(raw, f"--set {key}") if raw.strip() else ""


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = raw
        for depth, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(path[: depth + 1])
                raise ConfigError(f"--set {ECHO.repr(item)}: {shorten(where)} is a value, not a section")
            node = child
        node[path[-1]] = value
    return raw


def resolve_plugin(spec: str, base_dir: Path) -> str:
    """A ``.py`` file relative to ``base_dir`` becomes absolute; module names stay."""
    if spec.endswith(".py") and not Path(spec).expanduser().is_absolute():
        return str((base_dir / spec).resolve())
    return spec


def resolve_paths(raw: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Make relative data paths and ``plugins`` files absolute (relative to the recipe's folder)."""
    _refuse_nul_in_paths(raw)
    plugins = raw.get("plugins")
    if isinstance(plugins, list):
        raw["plugins"] = [resolve_plugin(p, base_dir) if isinstance(p, str) else p for p in plugins]
    data = raw.get("data")
    if not isinstance(data, dict):
        return raw
    if data.get("format") == "hub":  # a local dataset folder next to the recipe; else a hub name
        name = data.get("hub_name")
        if isinstance(name, str) and not Path(name).expanduser().is_absolute() and (base_dir / name).exists():
            data["hub_name"] = str((base_dir / name).resolve())
        return raw
    for split in ("train", "validation", "test"):
        spec = data.get(split)
        if not isinstance(spec, dict):
            continue
        for key in ("source", "target", "path"):
            value = spec.get(key)
            if isinstance(value, str) and not Path(value).expanduser().is_absolute():
                spec[key] = str((base_dir / value).resolve())
    return raw


def _refuse_nul_in_paths(raw: dict[str, Any]) -> None:
    """A NUL character cannot be in a path (the OS refuses it with a ValueError, not an OSError)."""
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    found = [("plugins", p) for p in raw.get("plugins") or [] if isinstance(raw.get("plugins"), list)]
    found += [("data.hub_name", data.get("hub_name"))]
    for split in ("train", "validation", "test"):
        spec = data.get(split)
        if isinstance(spec, dict):
            found += [(f"data.{split}.{key}", spec.get(key)) for key in ("source", "target", "path")]
    for where, value in found:
        if isinstance(value, str) and "\x00" in value:
            raise ConfigError(f"{where}: {ECHO.repr(value)} contains a NUL character, which no path may hold")
