"""Named registries of swappable components (cells, attention, ...).

Built-ins are declared by import path and imported lazily on first use, so that
this module (and the recipe validation built on it) never imports torch.
Third-party packages add components either by calling :meth:`Registry.register`
at import time or, without any import by the user, through an entry-point group
(``[project.entry-points."seq2seq_rnn.cells"] name = "pkg.module:Class"``).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as metadata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from seq2seq_rnn.errors import ConfigError, PluginError

BUILTIN = "built-in"


@dataclass(frozen=True)
class Entry:
    """Where a registered name comes from and how to obtain its object."""

    name: str
    target: str  # "module:attr" import path, or "" when ``obj`` is given
    origin: str  # "built-in", "<dist> <version> (entry point)", "register() in <module>"
    obj: Any = None


def did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def import_target(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Registry:
    """A name → component mapping with lazy built-ins and entry-point plugins.

    ``validator`` (optional) checks a loaded object against the component
    contract and raises :class:`PluginError` naming the origin if it fails.
    """

    def __init__(
        self,
        kind: str,
        group: str,
        builtins: dict[str, str],
        validator: Callable[[str, Any, str], None] | None = None,
    ) -> None:
        self.kind = kind
        self.group = group
        self._entries = {n: Entry(n, t, BUILTIN) for n, t in builtins.items()}
        self._plugins_scanned = False
        self._loaded: dict[str, Any] = {}
        self.validator = validator

    # -- discovery ---------------------------------------------------------
    def _scan_entry_points(self) -> None:
        """Read the entry-point group from installed metadata (no imports)."""
        if self._plugins_scanned:
            return
        found: dict[str, Entry] = {}
        for ep in metadata.entry_points(group=self.group):
            dist = getattr(ep, "dist", None)
            origin = f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"
            entry = Entry(ep.name, ep.value, f"{origin} (entry point)")
            if ep.name in self._entries and self._entries[ep.name].origin == BUILTIN:
                raise PluginError(
                    f"{self.kind} {ep.name!r} from {origin} (entry point {ep.value!r}) "
                    f"shadows a built-in {self.kind}; rename it in that package's pyproject.toml"
                )
            previous = found.get(ep.name) or self._entries.get(ep.name)
            if previous is not None and previous.target != entry.target:
                raise PluginError(
                    f"two providers of {self.kind} {ep.name!r}: {previous.origin} "
                    f"({previous.target}) and {entry.origin} ({entry.target}); uninstall one"
                )
            found[ep.name] = entry
        self._plugins_scanned = True  # only after a clean scan: a conflict stays an error on every call
        for name, entry in found.items():
            self._entries.setdefault(name, entry)

    def names(self) -> list[str]:
        self._scan_entry_points()
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        self._scan_entry_points()
        return [self._entries[n] for n in sorted(self._entries)]

    def origin(self, name: str) -> str:
        return self._entry(name).origin

    # -- registration ------------------------------------------------------
    def register(self, name: str, obj: Any = None) -> Any:
        """Register ``obj`` under ``name``; usable as ``@registry.register("name")``."""
        if obj is None:
            return lambda o: self.register(name, o)
        self._scan_entry_points()
        existing = self._entries.get(name)
        module = getattr(obj, "__module__", "?")
        if existing is not None and existing.obj is not obj:
            raise PluginError(
                f"cannot register {self.kind} {name!r} from {module}: the name is already "
                f"taken by {existing.origin} ({existing.target or existing.obj!r})"
            )
        origin = f"register() in {module}"
        if self.validator is not None:
            self.validator(name, obj, origin)
        self._entries[name] = Entry(name, "", origin, obj)
        self._loaded[name] = obj
        return obj

    def unregister(self, name: str) -> None:
        """Remove a name added with :meth:`register` (tests, notebooks)."""
        entry = self._entries.get(name)
        if entry is None or entry.obj is None:
            raise PluginError(f"{self.kind} {name!r} was not added with register()")
        del self._entries[name]
        self._loaded.pop(name, None)

    # -- lookup ------------------------------------------------------------
    def _entry(self, name: str) -> Entry:
        self._scan_entry_points()
        if name not in self._entries:
            raise ConfigError(self.unknown_message(name))
        return self._entries[name]

    def unknown_message(self, name: object, path: str = "", also: list[str] | tuple[str, ...] = ()) -> str:
        """``also``: names valid beside the registered ones (e.g. attention 'none')."""
        where = f"{path}: " if path else ""
        names = sorted([*self.names(), *also])
        choices = ", ".join(names)
        hint = did_you_mean(name, names) if isinstance(name, str) else ""
        return f"{where}unknown {self.kind} {name!r}{hint}. Valid choices: {choices}"

    def get(self, name: str) -> Any:
        """The component registered as ``name``, imported on first use."""
        if name in self._loaded:
            return self._loaded[name]
        entry = self._entry(name)
        try:
            obj = entry.obj if entry.obj is not None else import_target(entry.target)
        except Exception as exc:  # any import failure of third-party code
            raise PluginError(
                f"{self.kind} {name!r} from {entry.origin} could not be loaded from "
                f"{entry.target!r}: {type(exc).__name__}: {exc}"
            ) from exc
        if self.validator is not None and entry.origin != BUILTIN:
            self.validator(name, obj, entry.origin)
        self._loaded[name] = obj
        return obj
