"""Named registries of swappable components (cells, attention, ...).

Built-ins are declared by import path and imported lazily on first use, so that
this module (and the recipe validation built on it) never imports torch.
Third-party packages add components either by calling :meth:`Registry.register`
at import time or, without any import by the user, through an entry-point group
(``[project.entry-points."seq2seq_rnn.cells"] name = "pkg.module:Class"``).

A broken installed plugin can be bypassed: ``SEQ2SEQ_RNN_DISABLE_PLUGINS=1`` skips
every entry point, ``SEQ2SEQ_RNN_DISABLE_PLUGINS=dist-a,dist-b`` the named
distributions only. Two providers of one name (or a plugin claiming a built-in's
name) make only that name unusable, with an error naming both; everything else
keeps working. :func:`import_modules` imports user modules (``--import``, a recipe's
``plugins:``) whose ``register_*`` calls add components.

Trust: a recipe or a run directory is data, and may come from anyone. The modules its
``plugins:`` names are code, imported only with the user's consent (:func:`import_recipe_plugins`):
named with ``--import`` on this command line (:func:`allow_plugins`), or listed in
``SEQ2SEQ_RNN_ALLOW_PLUGINS=name,path.py``; ``SEQ2SEQ_RNN_DISABLE_PLUGINS=1`` withdraws
the variable's consent too. Entry points of installed distributions are the user's own
installation and load by name on first use, unless switched off. What plugin code prints
while it is imported goes to stderr, so ``translate``'s stdout carries translations only.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.metadata as metadata
import importlib.util
import logging
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seq2seq_rnn.errors import ConfigError, PluginConsentError, PluginError, describe_exit

BUILTIN = "built-in"
DISABLE_ENV = "SEQ2SEQ_RNN_DISABLE_PLUGINS"
ALLOW_ENV = "SEQ2SEQ_RNN_ALLOW_PLUGINS"
_COMMAND_LINE: set[str] = set()  # --import of this process: consent even with plugins switched off

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """Where a registered name comes from and how to obtain its object."""

    name: str
    target: str  # "module:attr" import path, or "" when ``obj`` is given
    origin: str  # "built-in", "<dist> <version> (entry point)", "register() in <module>"
    obj: Any = None
    conflict: str = ""  # several providers claim the name: why it cannot be used


def _normalize(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def disabled_distributions() -> set[str] | None:
    """From ``SEQ2SEQ_RNN_DISABLE_PLUGINS``: None when every plugin is off ("1", "true",
    "all"), else the normalised names of the distributions to skip (empty: none)."""
    value = os.environ.get(DISABLE_ENV, "").strip()
    if value.lower() in ("1", "true", "yes", "all"):
        return None
    return {_normalize(d) for d in value.split(",") if d.strip() and d.strip() not in ("0", "false", "no")}


def _same_plugin(a: str, b: str) -> bool:
    if a.endswith(".py") and b.endswith(".py"):
        return os.path.realpath(os.path.expanduser(a)) == os.path.realpath(os.path.expanduser(b))
    return a == b


@contextlib.contextmanager
def allow_plugins(specs: Iterable[str]) -> Iterator[None]:
    """Consent from the command line (``--import``), for the block: these modules may be imported
    for a recipe or run directory that names them. Exported in ``SEQ2SEQ_RNN_ALLOW_PLUGINS`` too, so
    the processes started meanwhile (Ray workers of a local cluster) share the consent."""
    specs = [s for s in specs if s]
    saved_env, saved_set = os.environ.get(ALLOW_ENV), set(_COMMAND_LINE)
    _COMMAND_LINE.update(specs)
    known = [s for s in (saved_env or "").split(",") if s.strip()]
    if specs:
        os.environ[ALLOW_ENV] = ",".join([*known, *(s for s in specs if s not in known)])
    try:
        yield
    finally:
        _COMMAND_LINE.clear()
        _COMMAND_LINE.update(saved_set)
        if saved_env is None:
            os.environ.pop(ALLOW_ENV, None)
        else:
            os.environ[ALLOW_ENV] = saved_env


def plugin_allowed(spec: str) -> bool:
    """Whether the user consented to importing ``spec`` (see the module's docstring)."""
    if any(_same_plugin(spec, given) for given in _COMMAND_LINE):
        return True
    if disabled_distributions() is None:  # plugins off: the variable's consent is withdrawn too
        return False
    allowed = [s.strip() for s in os.environ.get(ALLOW_ENV, "").split(",") if s.strip()]
    return any(_same_plugin(spec, given) for given in allowed)


def import_recipe_plugins(specs: list[str], source: str) -> None:
    """Import a recipe's (or run directory's) ``plugins:``, or refuse all of them, naming each one
    and the exact flags that allow them, when any lacks the user's consent."""
    refused = [spec for spec in specs if not plugin_allowed(spec)]
    if refused:
        listed = ", ".join(repr(s) for s in refused)
        flags = " ".join(f"--import {_shell_word(s)}" for s in refused)
        if disabled_distributions() is None:
            how = f"{DISABLE_ENV} is set, so only --import on the command line allows them: add {flags}"
        else:
            how = f"if you trust it, add {flags}, or set {ALLOW_ENV}={_shell_word(','.join(refused))}"
        raise PluginConsentError(
            f"{source}: plugins: the recipe names code to import ({listed}); nothing was imported: "
            f"code named by a recipe or run directory runs only with your consent; {how}"
        )
    import_modules(specs, f"{source}: plugins")


def _shell_word(text: str) -> str:
    return shlex.quote(text)


@contextlib.contextmanager
def plugin_output_to_stderr() -> Iterator[None]:
    """While plugin code runs its import: what it prints goes to stderr (Python's sys.stdout and
    file descriptor 1 both), never into a command's output such as translations."""
    with contextlib.ExitStack() as stack:
        if sys.stdout is not None and sys.stderr is not None:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
            stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        try:
            saved = os.dup(1)
            os.dup2(2, 1)
        except OSError:  # no fd 1 or 2 (a daemon): nothing to mix into
            saved = None
        try:
            yield
        finally:
            if saved is not None:
                with contextlib.suppress(Exception):
                    sys.stderr.flush()
                os.dup2(saved, 1)
                os.close(saved)


def import_modules(specs: Iterable[str], source: str) -> None:
    """Import user modules first, so their ``register_cell``/``register_attention`` calls
    run: a dotted module name on sys.path, or a path to a ``.py`` file (loaded under its
    stem, without touching sys.path). Importing a module twice is a no-op. The caller has
    the user's consent (``--import``, or :func:`import_recipe_plugins`)."""
    for spec in specs:
        try:
            with plugin_output_to_stderr():
                if spec.endswith(".py"):
                    _import_file(Path(spec).expanduser())
                else:
                    importlib.import_module(spec)
        except Exception as exc:  # the user's code: any failure, reported with where it came from
            raise PluginError(f"{source}: cannot import {spec!r}: {type(exc).__name__}: {exc}") from exc
        except SystemExit as exc:  # sys.exit() at import: reported, never a silent exit with its code
            raise PluginError(
                f"{source}: importing {spec!r} raised {describe_exit(exc)}; a plugin must raise an exception, not exit"
            ) from None


def _import_file(path: Path) -> None:
    path = path.resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no such file {path}")
    name = f"seq2seq_rnn_user_{path.stem}"
    loaded = sys.modules.get(name)
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() == path:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before exec: pickling and dataclasses look the module up
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


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
    contract and raises :class:`PluginError` naming the origin if it fails;
    given as a callable or, like the built-ins, as a lazily imported "module:attr".
    """

    def __init__(
        self,
        kind: str,
        group: str,
        builtins: dict[str, str],
        validator: Callable[[str, Any, str], None] | str | None = None,
    ) -> None:
        self.kind = kind
        self.group = group
        self._builtins = {n: Entry(n, t, BUILTIN) for n, t in builtins.items()}
        self._entries = dict(self._builtins)
        self._plugins_scanned = False
        self._loaded: dict[str, Any] = {}
        self.validator = validator

    # -- discovery ---------------------------------------------------------
    def _scan_entry_points(self) -> None:
        """Read the entry-point group from installed metadata (no imports). A name
        claimed by several providers is kept as a conflict: only its users fail."""
        if self._plugins_scanned:
            return
        self._plugins_scanned = True
        disabled = disabled_distributions()
        if disabled is None:
            log.info("%s is set: no %s plugins loaded", DISABLE_ENV, self.kind)
            return
        found: dict[str, list[Entry]] = {}
        for ep in metadata.entry_points(group=self.group):
            dist = getattr(ep, "dist", None)
            if dist is not None and _normalize(dist.name) in disabled:
                log.info("%s plugin %r of %s skipped (%s)", self.kind, ep.name, dist.name, DISABLE_ENV)
                continue
            origin = f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"
            found.setdefault(ep.name, []).append(Entry(ep.name, ep.value, f"{origin} (entry point)"))
        for name, entries in found.items():
            unique = {e.target: e for e in reversed(entries)}  # one distribution found twice is no conflict
            providers = sorted(unique.values(), key=lambda e: e.origin)
            existing = self._entries.get(name)
            if existing is not None:  # a plugin claiming a built-in's name: never a silent replacement
                providers = [existing, *providers]
            if len(providers) > 1:
                self._entries[name] = Entry(name, "", "conflict", conflict=self._conflict(name, providers))
            else:
                self._entries[name] = providers[0]

    def _conflict(self, name: str, providers: list[Entry]) -> str:
        listed = " and ".join(f"{p.origin} ({p.target})" for p in providers)
        dists = [p.origin.split(" ")[0] for p in providers if p.origin != BUILTIN]
        return (
            f"{self.kind} {name!r} is claimed by {len(providers)} providers: {listed}; uninstall one, "
            f"or skip one with {DISABLE_ENV}={dists[-1]}"
            + (" (a plugin may not take a built-in's name)" if providers[0].origin == BUILTIN else "")
        )

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
            taken = existing.conflict or f"{existing.origin} ({existing.target or existing.obj!r})"
            raise PluginError(
                f"cannot register {self.kind} {name!r} from {module}: the name is already taken by {taken}"
            )
        origin = f"register() in {module}"
        self._validate(name, obj, origin)
        self._entries[name] = Entry(name, "", origin, obj)
        self._loaded[name] = obj
        return obj

    def rescan(self) -> None:
        """Forget what was found through entry points (after installing a plugin, or
        changing SEQ2SEQ_RNN_DISABLE_PLUGINS in a running process); register() calls stay."""
        self._entries = {**self._builtins, **{n: e for n, e in self._entries.items() if e.obj is not None}}
        self._loaded = {n: o for n, o in self._loaded.items() if n in self._entries}
        self._plugins_scanned = False

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
        entry = self._entries[name]
        if entry.conflict:
            raise PluginError(entry.conflict)
        return entry

    def _validate(self, name: str, obj: Any, origin: str) -> None:
        if self.validator is None:
            return
        check = import_target(self.validator) if isinstance(self.validator, str) else self.validator
        check(name, obj, origin)

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
            if entry.obj is not None:
                obj = entry.obj
            else:
                with plugin_output_to_stderr():
                    obj = import_target(entry.target)
        except Exception as exc:  # any import failure of third-party code
            raise PluginError(
                f"{self.kind} {name!r} from {entry.origin} could not be loaded from "
                f"{entry.target!r}: {type(exc).__name__}: {exc}"
            ) from exc
        except SystemExit as exc:
            raise PluginError(
                f"{self.kind} {name!r} from {entry.origin}: importing {entry.target!r} raised {describe_exit(exc)}; "
                f"a plugin must raise an exception, not exit (skip it with {DISABLE_ENV}=<distribution>)"
            ) from None
        if entry.origin != BUILTIN:
            self._validate(name, obj, entry.origin)
        self._loaded[name] = obj
        return obj
