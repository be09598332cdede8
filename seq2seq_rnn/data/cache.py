"""The data cache: Arrow files of read splits and of their subword ids, shared by every run.

Where: ``$SEQ2SEQ_RNN_CACHE`` if set, else ``~/.cache/seq2seq_rnn``. It is a
property of the machine (like ``HF_HOME``), not of a recipe or a run, so that a
resumed run, every Ray worker on a node, every Tune trial and ``evaluate`` find
what the first of them built. Hub downloads go to its ``hub/`` folder.

An entry is a folder named by a digest of everything its content depends on,
built in a temporary sibling under a file lock and renamed into place with its
``meta.json`` written last: a reader sees a whole entry or none, and two
processes that miss at once build it once (the second waits, then reads).
Stale entries are never reused (their key differs) and can be deleted at will.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

CACHE_ENV = "SEQ2SEQ_RNN_CACHE"
META = "meta.json"


def cache_root(explicit: str | Path | None = None) -> Path:
    """``explicit``, else ``$SEQ2SEQ_RNN_CACHE``, else ``~/.cache/seq2seq_rnn``."""
    if explicit is not None:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser().resolve() if env else Path.home() / ".cache" / "seq2seq_rnn"


def digest(*parts: Any) -> str:
    """A short stable hex key of JSON-serialisable parts."""
    text = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def file_stamp(path: Path) -> list[Any]:
    """(resolved path, size, mtime in ns): what identifies a local file's content cheaply.

    Hashing the bytes of a multi-GB corpus on every start would cost seconds; an edit
    changes size or mtime, which is what ``datasets`` itself relies on for local files.
    """
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def tree_stamp(folder: Path) -> list[Any]:
    """:func:`file_stamp` of every file under ``folder``, in path order."""
    return [file_stamp(f) for f in sorted(folder.rglob("*")) if f.is_file()]


def cached(folder: Path, build: Callable[[Path], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """(meta, hit): the entry's metadata, building it with ``build(tmp_folder) -> meta`` if missing."""
    meta_file = folder / META
    if meta_file.is_file():
        return json.loads(meta_file.read_text(encoding="utf-8")), True
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if meta_file.is_file():  # built by another process while we waited
            return json.loads(meta_file.read_text(encoding="utf-8")), True
        for stale in folder.parent.glob(f".{folder.name}.tmp-*"):  # left by a killed build (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)  # an entry without meta.json is unfinished
        tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
        tmp.mkdir(parents=True)
        try:
            meta = build(tmp)
            (tmp / META).write_text(json.dumps(meta) + "\n", encoding="utf-8")
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return meta, False
