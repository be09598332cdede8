"""Who owns an output file: the one rule of every command that writes a path the user names.

``export --output``, ``plot --output``, ``translate --attention-plot``, ``translate --ray
--output``, ``tune --output-dir`` and ``average --output`` write only

- a file that does not exist yet, or
- a file that the same kind of command wrote there before, unchanged since.

Ownership comes from a record our code writes, never from a file's name: each folder
we write into gets a manifest (``.seq2seq-rnn-outputs.json``) naming every file we put
there with its SHA-256. A user's ``config.json`` or ``spm.model`` that happens to carry
one of our names is not in the manifest (or no longer has the recorded content), so it
is refused, before anything is written. An output is also never one of the command's
inputs: paths are compared resolved (``..``, symlinks) and by device and inode (hard
links), and a symlink at an output path is never written through or replaced.

``strict`` folders (export, plot, attention plots, tune) must moreover be new, empty, or
carry our manifest (an earlier output of ours): ``--output .`` in a project folder is
refused whole, naming what is there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from seq2seq_rnn.errors import UsageError

MANIFEST = ".seq2seq-rnn-outputs.json"
_DIRECTORY = "directory"  # the manifest's "hash" of a folder we created (tune's Ray folders)
_CHUNK = 1 << 20


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file: equal once resolved, or one inode (a hard link)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def refuse_inputs(output: Path, inputs: Iterable[Path], what: str) -> None:
    """An output may never be one of the inputs (nor a folder that is one)."""
    for source in inputs:
        if same_file(output, source):
            raise UsageError(
                f"{what}: the output {output} is the input {source}; nothing was changed. Name another output"
            )


class OutputFolder:
    """A folder a command writes named files into, with the manifest that says which are its own.

    Call :meth:`check` with every name first (it refuses before anything is written), then
    :meth:`write` each file; the manifest is updated after each file, so an interrupted
    command still owns what it finished.
    """

    def __init__(self, folder: Path, what: str, inputs: Iterable[Path] = (), strict: bool = False) -> None:
        self.folder = Path(folder)
        self.what = what
        self.inputs = [Path(p) for p in inputs]
        self.strict = strict
        self._files: dict[str, str] = {}

    # -- checks -----------------------------------------------------------
    def check(self, names: Iterable[str]) -> None:
        folder = self.folder
        if os.path.lexists(folder) and not folder.is_dir():
            raise UsageError(f"{folder} is a file; {self.what} writes a folder: give a new or empty one")
        blocker = next((p for p in folder.parents if os.path.lexists(p) and not p.is_dir()), None)
        if blocker is not None:
            raise UsageError(f"{folder} lies under {blocker}, which is a file; give a new or existing folder")
        refuse_inputs(folder, self.inputs, self.what)
        self._files = self._read_manifest()
        if self.strict and folder.is_dir() and not os.path.lexists(folder / MANIFEST):
            foreign = sorted(e.name for e in folder.iterdir())
            if foreign:
                raise UsageError(
                    f"{folder} already holds files that {self.what} did not write ({_first_names(foreign)}); "
                    "nothing was changed. Give a new or empty folder with --output"
                )
        for name in list(names):
            self._check_one(name)

    def _check_one(self, name: str) -> None:
        if not name or "/" in name or name in (".", "..", MANIFEST):
            raise UsageError(f"{self.what}: {name!r} cannot be an output name")
        path = self.folder / name
        refuse_inputs(path, self.inputs, self.what)
        if not os.path.lexists(path):
            return
        if path.is_symlink():
            raise UsageError(
                f"{path} is a symbolic link; {self.what} never writes through one. Nothing was changed: "
                "remove it or name another output"
            )
        if not self._owned(name):
            recorded = name in self._files
            why = "was changed since" if recorded else "was not written by"
            raise UsageError(
                f"{path} already exists and {why} seq2seq-rnn {self.what}; nothing was changed. "
                "Move it away or name another output"
            )

    def _owned(self, name: str) -> bool:
        recorded = self._files.get(name)
        path = self.folder / name
        if recorded is None or path.is_symlink():
            return False
        if recorded == _DIRECTORY:
            return path.is_dir()
        if not path.is_file():
            return False
        try:
            return file_hash(path) == recorded
        except OSError:
            return False

    def _read_manifest(self) -> dict[str, str]:
        path = self.folder / MANIFEST
        if not os.path.lexists(path):
            return {}
        if path.is_symlink() or not path.is_file():
            raise UsageError(f"{path} is not a manifest {self.what} wrote; nothing was changed. Name another output")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            files = data["files"]
            if not isinstance(files, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in files.items()
            ):
                raise TypeError("files is not a mapping of names to hashes")
        except (OSError, ValueError, KeyError, TypeError):
            raise UsageError(
                f"{path} is not a manifest seq2seq-rnn wrote (unreadable); nothing was changed. Name another output"
            ) from None
        return dict(files)

    # -- writing ----------------------------------------------------------
    def write(self, name: str, writer: Callable[[Path], Any]) -> Path:
        """``writer(tmp)`` writes the file at a temporary path in the folder (same suffix); it then
        replaces ``folder/name`` atomically and is recorded with its hash."""
        self._check_one(name)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / name
        tmp = self.folder / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{Path(name).suffix}"
        try:
            writer(tmp)
            digest = file_hash(tmp)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._files[name] = digest
        self._save_manifest()
        return path

    def write_bytes(self, name: str, data: bytes) -> Path:
        return self.write(name, lambda tmp: tmp.write_bytes(data))

    def owns_directory(self, name: str) -> bool:
        return self._files.get(name) == _DIRECTORY and (self.folder / name).is_dir()

    def record_directory(self, name: str) -> None:
        """A folder we create (tune's ``tune/``, ``best_run/``): ours from now on."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._files[name] = _DIRECTORY
        self._save_manifest()

    def _save_manifest(self) -> None:
        body = json.dumps({"written_by": f"seq2seq-rnn {self.what}", "files": self._files}, indent=1) + "\n"
        path = self.folder / MANIFEST
        tmp = self.folder / f".{MANIFEST}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        tmp.write_text(body, encoding="utf-8")
        os.replace(tmp, path)


def check_output_file(
    path: Path, what: str, inputs: Iterable[Path] = (), reserved: Callable[[Path], str] | None = None
) -> OutputFolder:
    """One user-named output file: new, or ours and unchanged; never an input nor ``reserved(path)``'s reason."""
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise UsageError(f"{what}: {path} is not a file name")
    if path.is_dir() and not path.is_symlink():
        raise UsageError(f"{what}: {path} is a folder; name a file")
    if reserved is not None and (why := reserved(path)):
        raise UsageError(f"{what}: {path} {why}; nothing was changed. Name a new file")
    folder = OutputFolder(path.parent, what, inputs)
    folder.check([path.name])
    return folder


def _first_names(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
