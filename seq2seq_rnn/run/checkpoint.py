"""Checkpoints: atomic writes and safe loads (tensors and plain data only).

A file is written to a temporary file in the same folder, flushed to disk and
renamed over the old one, so a kill (or a full disk) at any moment leaves
either the old or the new file, never a truncated one; a kill can leave a
``.NAME.*.tmp`` file behind, which :func:`remove_stale_temporaries` clears.
Loading uses ``torch.load(weights_only=True)``: it never unpickles arbitrary
objects.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch

from seq2seq_rnn.config import ModelConfig
from seq2seq_rnn.errors import CheckpointError

FORMAT_VERSION = 1
_TMP_SUFFIX = ".tmp"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus the format version) atomically to ``path``.

    Any failure (disk full, read-only folder, an object torch cannot save) is a
    :class:`CheckpointError`, and the previous file at ``path`` is left intact.
    """
    path = Path(path)
    try:
        with atomic_file(path) as handle:
            torch.save({"format_version": FORMAT_VERSION, **payload}, handle)
    except OSError as exc:
        full = " (the disk is full: free some space, then resume)" if exc.errno == errno.ENOSPC else ""
        raise CheckpointError(
            f"cannot write checkpoint {path}: {exc}{full}; the previous {path.name}, if any, is intact"
        ) from exc
    except Exception as exc:  # e.g. a payload torch.save cannot serialise
        raise CheckpointError(
            f"cannot write checkpoint {path}: {type(exc).__name__}: {exc}; the previous {path.name}, if any, is intact"
        ) from exc


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically; OSError on failure."""
    with atomic_file(Path(path)) as handle:
        handle.write(text.encode("utf-8"))


def copy_atomic(source: Path, path: Path) -> None:
    """Replace ``path`` with a copy of ``source`` atomically (a link at ``path`` is replaced, not followed)."""
    with atomic_file(Path(path)) as handle, open(source, "rb") as src:
        shutil.copyfileobj(src, handle)


def open_no_follow(path: Path, mode: str = "a") -> IO[str]:
    """A text handle on ``path`` for appending (``a``) that never follows a symbolic link: a link
    there is an OSError (ELOOP), so a log or metrics line never lands in a file outside the run."""
    if mode != "a":
        raise ValueError(f"open_no_follow: mode {mode!r}; only 'a' (appending) is supported")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    return os.fdopen(fd, "a", encoding="utf-8")


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """A binary handle whose content replaces ``path`` only if the block completes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{_TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def remove_stale_temporaries(folder: Path) -> int:
    """Delete temporary files a killed writer left in ``folder``; returns how many."""
    removed = 0
    for tmp in Path(folder).glob(f".*{_TMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed += 1
    return removed


def check_writable(folder: Path) -> None:
    """Create ``folder`` and a file in it, or raise the OSError that says why not."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_file(folder / ".write-test"):
        pass
    (folder / ".write-test").unlink()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    _check_integrity(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt, or holding non-tensor objects
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated, corrupt, or holding objects other than "
            f"tensors and plain data, which are never unpickled): {type(exc).__name__}: {detail}"
        ) from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"{path} is not a seq2seq_rnn checkpoint")
    version = payload["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version!r}, newer than this seq2seq_rnn understands "
            f"({FORMAT_VERSION}); upgrade seq2seq_rnn"
        )
    model = payload.get("model")
    if not isinstance(model, dict) or not all(isinstance(v, torch.Tensor) for v in model.values()):
        raise CheckpointError(f"{path} is not a seq2seq_rnn checkpoint (no model weights)")
    bad = [name for name, t in model.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise CheckpointError(
            f"{path} holds non-finite weights (NaN or inf) in {shown}; it cannot translate. "
            "Use another checkpoint (e.g. --checkpoint best) or resume from an earlier one"
        )
    return payload


def _check_integrity(path: Path) -> None:
    """Refuse a file whose zip records are truncated or fail their CRC-32."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except Exception as exc:  # BadZipFile, zlib.error, EOFError, ...: truncated or not a checkpoint at all
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated, corrupt, or not written by seq2seq_rnn): "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if bad is not None:
        raise CheckpointError(f"{path} is corrupt: record {bad!r} fails its CRC-32 check (a damaged copy?)")


def weights_fingerprint(path: Path) -> str:
    """``sha256:`` of a checkpoint file's bytes (streamed): which weights a score was computed with.

    Unlike :func:`fingerprint` (the run's tokenizer and model section, the same for all its
    checkpoints) it changes whenever a checkpoint file is replaced, e.g. by a new best.pt.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()[:16]}"


def checkpoint_identity(path: Path) -> dict[str, Any]:
    """``{"step", "fingerprint"}`` of a checkpoint file: its training step (None when it does not say,
    e.g. an averaged one) and :func:`weights_fingerprint`."""
    path = Path(path)
    progress = load_checkpoint(path).get("progress")
    step = progress.get("step") if isinstance(progress, dict) else None
    if step is None and path.stem.startswith("step-") and path.stem[5:].isdigit():
        step = int(path.stem[5:])
    return {"step": step if isinstance(step, int) else None, "fingerprint": weights_fingerprint(path)}


def fingerprint(tokenizer_files: list[Path], model: ModelConfig) -> dict[str, str]:
    """What ties weights to their run: hashes of the tokenizer model file(s) and of the recipe's
    model section (non-default values only, so a field added later with the old behaviour as its
    default leaves old checkpoints loadable)."""
    tok = hashlib.sha256()
    for path in tokenizer_files:
        tok.update(Path(path).read_bytes())
    section = json.dumps(model.model_dump(mode="json", exclude_defaults=True), sort_keys=True)
    digest = hashlib.sha256(section.encode("utf-8"))
    return {"tokenizer": f"sha256:{tok.hexdigest()[:16]}", "model": f"sha256:{digest.hexdigest()[:16]}"}


def check_fingerprint(
    payload: dict[str, Any],
    expected: dict[str, str],
    path: Path,
    run: Path,
    parts: tuple[str, ...] = ("tokenizer", "model"),
) -> None:
    """Refuse a checkpoint trained with another tokenizer or model section than ``run`` holds.

    Checkpoints written before fingerprints existed carry none and are accepted.
    """
    saved = payload.get("fingerprint")
    if not isinstance(saved, dict):
        return
    if "tokenizer" in parts and saved.get("tokenizer") not in (None, expected["tokenizer"]):
        raise CheckpointError(
            f"{path} was trained with another tokenizer (fingerprint {saved['tokenizer']}) than the one in "
            f"{run / 'tokenizer'} (fingerprint {expected['tokenizer']}): the same ids would mean other subwords. "
            "Use the checkpoint with the run directory it was trained in"
        )
    if "model" in parts and saved.get("model") not in (None, expected["model"]):
        raise CheckpointError(
            f"{path} was trained with another model section (fingerprint {saved['model']}) than the recipe in "
            f"{run / 'recipe.yaml'} (fingerprint {expected['model']}). "
            "Use the checkpoint with the run directory it was trained in"
        )


def load_model_state(model: torch.nn.Module, state: dict[str, Any], path: Path) -> None:
    """Load weights, turning a shape or key mismatch into a clear error."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[:4])
        raise CheckpointError(f"{path} does not fit this model (another model shape or cell?): {detail}") from None
