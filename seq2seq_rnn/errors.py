"""Typed errors for everything a user can get wrong.

Every exception raised for bad user input (recipes, data, checkpoints, plugins)
derives from :class:`Seq2SeqError`; the CLI prints its message without a
traceback and exits with status 2. ``assert`` is kept for internal invariants.
"""

from __future__ import annotations


class Seq2SeqError(Exception):
    """Base class of every user-facing error of this package."""


class UsageError(Seq2SeqError):
    """Command-line arguments that do not fit together (e.g. --src without --ref)."""


class ConfigError(Seq2SeqError):
    """A recipe or an override is invalid. The message names the dotted path."""


class DataError(Seq2SeqError):
    """A corpus cannot be read or is inconsistent (e.g. mismatched line counts)."""


class CheckpointError(Seq2SeqError):
    """A checkpoint or run directory is missing, corrupt or incompatible."""


class PluginError(Seq2SeqError):
    """A plugin component cannot be loaded or breaks its contract."""


class PluginConsentError(PluginError):
    """A recipe or run directory names code to import that the user has not allowed."""


class TrainingError(Seq2SeqError):
    """Training cannot continue (e.g. too many non-finite losses)."""


class TrainingInterrupted(TrainingError):
    """SIGINT/SIGTERM stopped training after writing a checkpoint; resumable."""


class RunDirError(Seq2SeqError):
    """A folder is not a run directory of ours, holds no run, cannot be written, or another process is writing it."""


class PluginExit(RuntimeError):
    """Plugin code raised ``SystemExit`` while running (``sys.exit()`` in a cell's ``forward``, say).

    Deliberately not a :class:`Seq2SeqError`: it travels like any failure of plugin code, so
    training writes its last good state and the error names the cell and where it came from
    (see ``cells/failure.py``), instead of the process ending silently with the plugin's code.
    """


def describe_exit(exc: SystemExit) -> str:
    """``SystemExit(3)``, ``SystemExit()``: how a plugin's exit is named in messages."""
    return f"SystemExit({exc.code!r})" if exc.code is not None else "SystemExit()"
