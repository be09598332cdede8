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

Local files are keyed by their **content** (:func:`file_stamp`: a streamed
xxh3-128 of the bytes), not by size and modification time: a file edited in
place with both kept (``touch -r``, sync tools, restored backups) would
otherwise train and score on the old text. Measured with
``PYTHONPATH=. python tools/bench_cache_hash.py --mb 1024`` on the 2-core
development machine while shared (load ~4.7): 0.20 s per GB of a file in the
page cache, against 1.83 s/GB for SHA-256 and 2.48 s/GB for BLAKE2b in the same
run (a cold read is bounded by the disk instead). Hence a non-cryptographic hash:
the key guards against accidents, not against someone who can write the corpus.
Opening an entry re-hashes its files too (below), so a start costs about
0.2 s per GB of corpus and per GB of cache entries it opens.

Every entry is **sealed**: ``meta.json`` records the size and xxh3-128 of each
file of the entry and a digest of itself. Opening an entry checks the seal, so a
truncated or garbled Arrow file or a broken ``meta.json`` is found before any
row is served; such an entry is rebuilt with a warning (never a traceback on
every later run). A location that cannot hold the cache (a file, a read-only
folder missing an entry, a full disk) raises one :class:`CacheError` naming the
folder and ``SEQ2SEQ_RNN_CACHE``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from seq2seq_rnn.errors import DataError

CACHE_ENV = "SEQ2SEQ_RNN_CACHE"
META = "meta.json"
_CHUNK = 4 << 20  # bytes per read while hashing: large enough that Python's loop costs nothing
_SEAL_VERSION = 1
# errno values that mean "this location cannot hold the cache" wherever they arise ...
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
# ... and those that do when they name a path inside the cache (else they are about the data)
_IN_THE_WAY = {errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST, errno.EISDIR}

log = logging.getLogger(__name__)


class CacheError(DataError):
    """The data cache's folder cannot be used (not a folder, not writable, full)."""


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


def content_hash(path: Path) -> str:
    """``xxh3_128:<hex>`` of a regular file's bytes, streamed (never the whole file in memory)."""
    import xxhash  # declared in pyproject (datasets needs it too)

    hasher = xxhash.xxh3_128()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    return f"xxh3_128:{hasher.hexdigest()}"


def require_regular_file(path: Path) -> os.stat_result:
    """``path``'s stat if it is a regular file (or a link to one); else a :class:`DataError` saying what it is.

    A named pipe or a device cannot be a corpus: it is read twice (hashed for the cache key,
    then read), and opening a pipe with no writer would hang.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if stat.S_ISREG(st.st_mode):
        return st
    if stat.S_ISDIR(st.st_mode):
        raise DataError(f"{path} is a folder, not a file; give the path of the text file inside it")
    kinds = {stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}
    kind = kinds.get(stat.S_IFMT(st.st_mode), "a socket or other special file")
    raise DataError(
        f"{path} is {kind}, not a regular file; data must be a regular file (write the stream to a file first)"
    )


def file_stamp(path: Path) -> list[Any]:
    """(resolved path, size, content hash): what identifies a local file's content.

    Size and modification time are not enough: ``touch -r`` and restored backups keep
    both while the text changes. The hash costs ~0.2 s per GB here (see the module doc).
    """
    st = require_regular_file(path)
    try:
        return [str(path.resolve()), st.st_size, content_hash(path)]
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None


def tree_stamp(folder: Path) -> list[Any]:
    """:func:`file_stamp` of every file under ``folder``, in path order."""
    return [file_stamp(f) for f in sorted(folder.rglob("*")) if f.is_file()]


# ------------------------------------------------------------------ entries
def cached(folder: Path, build: Callable[[Path], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """(meta, hit): the entry's metadata, building it with ``build(tmp_folder) -> meta`` if missing.

    A damaged entry (see :func:`_unsealed`) is rebuilt with a warning. Raises
    :class:`CacheError` when the cache's location cannot hold the entry.
    """
    meta, problem = _open(folder)
    if meta is not None:
        return meta, True
    try:
        return _build_locked(folder, build), False
    except OSError as exc:
        root = _root_of(folder)
        inside = exc.filename is None or Path(os.path.abspath(exc.filename)).is_relative_to(root)
        if exc.errno in _FULL or (exc.errno in _IN_THE_WAY and inside):
            raise _unusable(root, folder, exc) from None
        raise


def _build_locked(folder: Path, build: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    _mkdirs(folder.parent)
    with FileLock(str(folder) + ".lock"):
        meta, problem = _open(folder)  # built by another process while we waited
        if meta is not None:
            return meta
        if problem is not None:
            log.warning("data cache: %s is damaged (%s); rebuilding it", folder, problem)
        for stale in folder.parent.glob(f".{folder.name}.tmp-*"):  # left by a killed build (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        if folder.is_symlink() or folder.is_file():
            folder.unlink()
        shutil.rmtree(folder, ignore_errors=True)  # an entry without a valid meta.json is unfinished or damaged
        tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
        tmp.mkdir(parents=True)
        try:
            meta = build(tmp)
            (tmp / META).write_text(json.dumps(_seal(tmp, meta)) + "\n", encoding="utf-8")
            os.replace(tmp, folder)
        except Exception as exc:
            # Some writers (sentencepiece) do not report a full disk; the model they cut short
            # then fails to load with a message about its format. Name the real cause.
            if not isinstance(exc, OSError) and _nearly_full(tmp):
                raise OSError(errno.ENOSPC, "No space left on device", str(tmp)) from exc
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return meta


def _nearly_full(path: Path) -> bool:
    """Less than 1 MiB left for this process on ``path``'s file system."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < (1 << 20)


def _mkdirs(path: Path) -> None:
    """``mkdir -p`` that says which component is in the way (a file where a folder must be)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:  # a file at ``path`` or above it
        raise OSError(errno.ENOTDIR, "a file is in the way of a folder", exc.filename) from None


def _seal(tmp: Path, meta: dict[str, Any]) -> dict[str, Any]:
    files = {
        str(f.relative_to(tmp)): [f.stat().st_size, content_hash(f)]
        for f in sorted(tmp.rglob("*"))
        if f.is_file() and f.name != META
    }
    body = {"version": _SEAL_VERSION, "meta": meta, "files": files}
    return {**body, "seal": digest(body)}


def _open(folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(meta, None) for a sound entry; (None, why) for a damaged one; (None, None) when absent."""
    meta_file = folder / META
    try:
        text = meta_file.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None, (f"{META} is missing" if folder.is_dir() else None)
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"{META} cannot be read: {exc}"
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"{META} is not valid JSON ({exc})"
    problem = _unsealed(folder, record)
    return (record["meta"], None) if problem is None else (None, problem)


def _unsealed(folder: Path, record: Any) -> str | None:
    """Why ``record`` (a parsed ``meta.json``) does not vouch for ``folder``'s files; None if it does."""
    if not isinstance(record, dict) or set(record) != {"version", "meta", "files", "seal"}:
        return f"{META} is not one of ours (an older layout or edited)"
    body = {k: record[k] for k in ("version", "meta", "files")}
    if record["seal"] != digest(body) or not isinstance(record["meta"], dict) or not isinstance(record["files"], dict):
        return f"{META} does not match its own seal (edited or garbled)"
    for name, expected in record["files"].items():
        path = folder / name
        try:
            size = path.stat().st_size
            if size != expected[0]:
                return f"{name} has {size} bytes, {expected[0]} expected (truncated or overwritten)"
            if content_hash(path) != expected[1]:
                return f"{name}'s content does not match its recorded hash (garbled)"
        except OSError as exc:
            return f"{name} cannot be read: {exc.strerror or exc}"
    return None


def _root_of(folder: Path) -> Path:
    """The cache's root folder of an entry (entries sit one level below it: splits/, tokens/, …)."""
    return Path(os.path.abspath(folder.parent.parent))


def _unusable(root: Path, folder: Path, exc: OSError) -> CacheError:
    reason = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exhausted",
        errno.EFBIG: "a file grew past the size this process may write",
        errno.EROFS: "it is on a read-only file system",
        errno.ENOTDIR: "a file is in the way where a folder must be",
        errno.EEXIST: "a file is in the way where a folder must be",
        errno.EISDIR: "a folder is in the way where a file must be",
    }.get(exc.errno or 0, "it is not writable" if isinstance(exc, PermissionError) else exc.strerror or str(exc))
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    full = exc.errno in {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
    advice = (
        f"free space there, or set {CACHE_ENV} to a folder on another disk"
        if full
        else (f"set {CACHE_ENV} to a writable folder (e.g. export {CACHE_ENV}=/path/to/cache)")
    )
    return CacheError(
        f"the data cache {root} cannot hold the entry it needs ({folder.name}): {reason}{where}; {advice}"
    )
