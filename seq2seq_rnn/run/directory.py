"""The layout of a run directory, shared by training, translation and evaluation.

RUN_DIR/
  seq2seq_rnn.json     the marker: written first, it says the folder is a run of ours
  seq2seq_rnn.lock     the writer lock (holds the pid of the process writing the run)
  recipe.yaml          the resolved recipe (every default filled in)
  tokenizer/           sentencepiece model(s)
  checkpoints/last.pt  latest training state (model, optimizer, RNG, ...)
  checkpoints/best.pt  weights with the best validation BLEU
  metrics.jsonl        one JSON object per logged step or validation (read with read_metrics)
  data.json            pair counts as loaded: read, kept, dropped (for the model card)
  train.log            the training log
  checkpoints/step-*.pt  weights of the newest validations (train.keep_checkpoints), for averaging
  checkpoints/averaged.pt  ``seq2seq-rnn average``'s default output
  tensorboard/         TensorBoard event files (train.tensorboard: true)
  ray_train.json       where a Ray Train run keeps its checkpoints ({"storage_path", "name"})
  ray/                 those checkpoints, by default (scaling.storage_path)
  scores.json          every evaluate/test score with its provenance
  README.md            the model card (written at the end of ``seq2seq-rnn train``)
  plots/               ``seq2seq-rnn plot``'s default output
  seq2seq_rnn.start.json  while a start has not reached its first last.pt: what the folder held
                       before it (so a restart removes only what that start created)
  unfinished-start-*/  what such a start created, kept aside by its restart (never deleted)

A Ray checkpoint is a snapshot of the files :meth:`RunDir.snapshot_files` names.

Why a marker: ``--output-dir .`` or a typo must never overwrite a user's
README.md or delete a folder called ``tokenizer/``. A folder is written to only
if it is new, empty, or carries the marker; anything else is refused unchanged.

Why a kernel lock: two processes writing one run would leave a recipe, model
card and weights from different runs. The kernel drops the lock when its holder
exits, even by SIGKILL, so a crashed run never blocks the next. It is a POSIX
record lock (``lockf``), not ``flock``: a forked child (``datasets``' map workers)
does not inherit it, so a child outliving a killed trainer never holds the run.

Why no links: a symlink inside a run (``metrics.jsonl`` -> ``~/.bashrc``, ``checkpoints/`` -> another
run) would make every writer append to, truncate or replace a file outside the folder. Every command
that writes a run goes through :meth:`RunDir.claim`, :meth:`RunDir.lock` or, for ``plot`` and ``export``,
:meth:`RunDir.check_no_links`, and each refuses a run holding a link, naming it, before it writes
anything; the writers themselves replace files atomically (a rename replaces a link, never its
target) or open with ``O_NOFOLLOW``, so a link made while a command runs is not followed either.

Why a start record: a run that lost ``last.pt`` (deleted to save disk, say) still holds trained
work (``best.pt``, step checkpoints, validated metrics). Only a start that recorded itself and never
reached its first ``last.pt`` is "unfinished"; its restart moves what that start created aside (never
deleting it), and any other run without ``last.pt`` that holds trained work is refused, unchanged.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seq2seq_rnn.config import Recipe, load_recipe
from seq2seq_rnn.errors import CheckpointError, RunDirError
from seq2seq_rnn.run.checkpoint import load_checkpoint, write_text_atomic

log = logging.getLogger(__name__)

MARKER_NAME = "seq2seq_rnn.json"
LOCK_NAME = "seq2seq_rnn.lock"
START_NAME = "seq2seq_rnn.start.json"
RUN_FORMAT_VERSION = 1
# What training writes into a run before its first checkpoint that a restart would mix with its own
# (repeated metrics rows, another tokenizer): moved aside by the restart of an unfinished start (with
# that start's checkpoints), and only if that start created them.
UNFINISHED_START_FILES = ("metrics.jsonl", "tensorboard", "tokenizer")
# Folders whose insides belong to another tool (Ray Train's storage): links in them are not ours to judge.
_NOT_WALKED = ("ray",)

_HELD: dict[Path, list[int]] = {}  # resolved run path -> [lock fd, depth]: re-entrant within one process


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def marker(self) -> Path:
        return self.path / MARKER_NAME

    @property
    def lock_file(self) -> Path:
        return self.path / LOCK_NAME

    @property
    def recipe(self) -> Path:
        return self.path / "recipe.yaml"

    @property
    def tokenizer(self) -> Path:
        return self.path / "tokenizer"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def data_counts(self) -> Path:
        return self.path / "data.json"

    def read_metrics(self, required: bool = False) -> list[dict[str, Any]]:
        """The rows of metrics.jsonl (see :func:`read_metrics`); ``required``: a run without one is an error."""
        if required and not self.metrics.exists():  # a folder there: read_metrics names it
            raise CheckpointError(f"{self.path}: no metrics.jsonl (is it a run directory that has trained?)")
        return read_metrics(self.metrics)

    def read_data_counts(self) -> dict[str, Any]:
        """What training wrote into data.json; empty for a run from before it existed."""
        if not self.data_counts.is_file():
            return {}
        try:
            counts = json.loads(self.data_counts.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{self.data_counts}: cannot read the data counts: {exc}") from None
        return counts if isinstance(counts, dict) else {}

    @property
    def log(self) -> Path:
        return self.path / "train.log"

    @property
    def scores(self) -> Path:
        return self.path / "scores.json"

    @property
    def averaged(self) -> Path:
        return self.checkpoints / "averaged.pt"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    @property
    def ray_state(self) -> Path:
        return self.path / "ray_train.json"

    @property
    def ray_storage(self) -> Path:
        return self.path / "ray"

    @property
    def model_card(self) -> Path:
        return self.path / "README.md"

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    def snapshot_files(self, with_state: bool = True) -> list[Path]:
        """The files that travel with a Ray snapshot of this run, those that exist: recipe.yaml and
        tokenizer/ (what every rank needs) and, ``with_state``, the training state."""
        files = [self.recipe, *sorted(self.tokenizer.glob("*"))]
        if with_state:
            files += [self.marker, self.metrics, self.data_counts, self.log, self.last, self.best]
        return [f for f in files if f.is_file()]

    def step_checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:08d}.pt"

    def kept_checkpoints(self) -> list[Path]:
        """Step checkpoints kept by ``train.keep_checkpoints``, oldest first."""
        return sorted(self.checkpoints.glob("step-*.pt"))

    def has_training_state(self) -> bool:
        return self.last.is_file()

    def is_ours(self) -> bool:
        """Marked as a run, or a run written before runs carried the marker (recipe + checkpoint)."""
        return self.marker.is_file() or (self.recipe.is_file() and self.has_training_state())

    def load_recipe(self) -> Recipe:
        if not self.recipe.is_file():
            raise CheckpointError(f"{self.path} is not a run directory (no recipe.yaml)")
        return load_recipe(self.recipe)

    def checkpoint(self, which: str) -> Path:
        """``best``, ``last``, or a path to a checkpoint file.

        ``best`` is ``last.pt`` only while no validation has happened (every validation writes
        best.pt first); a best.pt lost after validations is an error, never last.pt in its name.
        """
        if which in ("best", "last"):
            path = self.best if which == "best" else self.last
            if which == "best" and not path.is_file() and self.last.is_file():
                validations = [m for m in self.read_metrics() if "val_bleu" in m]
                if validations:
                    top = max(validations, key=lambda m: m["val_bleu"] if isinstance(m["val_bleu"], float) else -1)
                    raise CheckpointError(
                        f"{self.best} is missing, though {self.metrics.name} records {len(validations)} "
                        f"validation(s) (the best, BLEU {top.get('val_bleu')}, at step {top.get('step')}): "
                        f"{self.last.name} holds other weights and is not scored as best. Use --checkpoint last "
                        f"for the latest weights, or a kept step checkpoint (--checkpoint {self.checkpoints}/step-*.pt)"
                    )
                return self.last  # no validation happened yet
            return path
        return Path(which)

    # -- claiming -------------------------------------------------------
    def claim(self, resume: bool = False) -> None:
        """Make the folder a run of ours, or refuse it without changing anything in it.

        New or empty folders get the marker (written before anything else); a marked
        folder is ours already; a run from before the marker existed is adopted. A
        non-empty folder without the marker is refused, and so is ``--resume`` into a
        folder that holds no run.
        """
        path = self.path
        if path.exists() and not path.is_dir():
            raise RunDirError(f"{path} is a file, not a folder; choose another --output-dir")
        if self.marker.is_file() and not self.marker.is_symlink():
            self.check_no_links()
            self._check_marker()
            self._check_entries()
            return
        entries = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
        if entries and not self.is_ours():
            raise RunDirError(
                f"{path} is not empty and is not a seq2seq_rnn run directory (no {MARKER_NAME}; it holds "
                f"{_first_names(entries)}). "
                "Nothing in it was changed. Choose a new or empty folder with --output-dir, e.g. "
                f"--output-dir {path / 'run'}"
            )
        self.check_no_links()  # before the marker is written into it
        if not entries and resume:
            where = "is empty" if path.is_dir() else "does not exist"
            raise RunDirError(
                f"--resume: {path} holds no run to resume (the folder {where}). To start a new run there, "
                "leave out --resume; to continue a run, give its folder with --output-dir"
            )
        if entries:
            self._check_entries()
            log.info("%s: a run from before run directories carried %s; marking it", path, MARKER_NAME)
        try:
            path.mkdir(parents=True, exist_ok=True)
            marker = {"format": "seq2seq_rnn run directory", "format_version": RUN_FORMAT_VERSION}
            marker["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            write_text_atomic(self.marker, json.dumps(marker) + "\n")
        except OSError as exc:
            raise RunDirError(f"cannot write to the output directory {path}: {exc}") from None

    def _check_marker(self) -> None:
        try:
            marker = json.loads(self.marker.read_text(encoding="utf-8"))
            version = marker["format_version"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RunDirError(
                f"{self.marker} is damaged ({type(exc).__name__}); if {self.path} is a run of seq2seq_rnn, "
                "delete the file and run again"
            ) from None
        if not isinstance(version, int) or version > RUN_FORMAT_VERSION:
            raise RunDirError(
                f"{self.path} is a run directory of format {version!r}, newer than this seq2seq_rnn understands "
                f"({RUN_FORMAT_VERSION}); upgrade seq2seq_rnn"
            )

    # -- links -------------------------------------------------------------
    def links(self) -> list[Path]:
        """Symbolic links inside the run (the run's own path may be one: the user named it)."""
        found: list[Path] = []
        if not self.path.is_dir():
            return found
        for folder, dirs, files in os.walk(self.path):  # never descends into a linked folder
            here = Path(folder)
            found += [here / name for name in (*dirs, *files) if (here / name).is_symlink()]
            if here == self.path:
                dirs[:] = [d for d in dirs if d not in _NOT_WALKED]
        return sorted(found)

    def check_no_links(self) -> None:
        """Refuse a run holding a symbolic link: a write through it would change a file outside the run."""
        links = self.links()
        if not links:
            return
        shown = ", ".join(f"{p.relative_to(self.path)} -> {os.readlink(p)}" for p in links[:3])
        more = f" and {len(links) - 3} more" if len(links) > 3 else ""
        raise RunDirError(
            f"{self.path} holds symbolic links ({shown}{more}); seq2seq_rnn never writes through a link in a "
            "run directory (it would change a file outside the run). Nothing was changed. Replace each link "
            "with the file or folder itself (or remove it), or train into another --output-dir"
        )

    # -- starts --------------------------------------------------------------
    @property
    def start_record(self) -> Path:
        return self.path / START_NAME

    def _entries(self) -> list[str]:
        return sorted(
            str(p.relative_to(self.path))
            for p in self.path.rglob("*")
            if p.relative_to(self.path).parts[0] not in _NOT_WALKED
        )

    def begin_start(self) -> None:
        """Record that a start without ``last.pt`` begins, and what the run holds before it writes.

        A restart of a start that recorded itself and never reached ``last.pt`` moves what that
        start created (:data:`UNFINISHED_START_FILES`, its checkpoints) aside; a run without
        ``last.pt`` and without a record that holds trained work is refused (see :meth:`trained_work`).
        """
        if self.start_record.is_file():
            self._clean_unfinished_start()
        else:
            self.check_no_trained_work()
        record = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "existed": self._entries()}
        write_text_atomic(self.start_record, json.dumps(record, indent=1) + "\n")

    def end_start(self) -> None:
        """The start reached its first ``last.pt``: from now on everything in the run is its work."""
        self.start_record.unlink(missing_ok=True)

    def _read_start(self) -> dict[str, Any]:
        try:
            record = json.loads(self.start_record.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RunDirError(
                f"{self.start_record} is damaged ({type(exc).__name__}), so it cannot say which files the "
                f"unfinished start in {self.path} created; nothing was changed. Move the run's files you want to "
                "keep elsewhere and start in a new folder"
            ) from None
        if not isinstance(record, dict) or not isinstance(record.get("existed"), list):
            raise RunDirError(f"{self.start_record} is not a start record of seq2seq_rnn; nothing was changed")
        return record

    def _clean_unfinished_start(self) -> None:
        """Move what an unfinished start created into ``unfinished-start-TIME-*/``; touch nothing else.

        Nothing is deleted: its checkpoints and metrics are trained work (if little), and its
        tokenizer is what they were trained with. Kept aside they are never mixed with the restart's.
        """
        existed = set(self._read_start()["existed"])
        made = [self.path / name for name in UNFINISHED_START_FILES if name not in existed]
        made = [p for p in made if p.exists() or p.is_symlink()]
        made += [p for p in self._checkpoint_files() if str(p.relative_to(self.path)) not in existed]
        if not made:
            return
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = Path(tempfile.mkdtemp(prefix=f"unfinished-start-{stamp}-", dir=self.path))
        for path in made:
            target = aside / path.relative_to(self.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
        log.warning(
            "%s: a start that never reached last.pt left %s; kept them in %s (delete it if you do not need them)",
            self.path,
            ", ".join(str(p.relative_to(self.path)) for p in made),
            aside,
        )

    def _checkpoint_files(self) -> list[Path]:
        names = [self.best, self.averaged, *self.kept_checkpoints()]
        return [p for p in names if p.is_file()]

    def trained_work(self) -> list[str]:
        """What the run holds besides ``last.pt`` that training produced, each with what it is."""
        found = []
        if self.best.is_file():
            found.append(f"checkpoints/best.pt{_step_of(self.best)}")
        steps = self.kept_checkpoints()
        if steps:
            found.append(f"{len(steps)} step checkpoint(s) ({', '.join(p.name for p in steps[-3:])})")
        if self.averaged.is_file():
            found.append("checkpoints/averaged.pt")
        rows = self.read_metrics() if self.metrics.is_file() else []
        validations = [r for r in rows if "val_bleu" in r]
        if validations:
            last = validations[-1].get("step")
            found.append(f"metrics.jsonl with {len(validations)} validation(s), the last at step {last}")
        elif rows:
            found.append(f"metrics.jsonl with {len(rows)} logged step(s)")
        for extra in (self.scores, self.tensorboard):
            if extra.exists():
                found.append(extra.name)
        return found

    def check_no_trained_work(self) -> None:
        """A run without ``last.pt`` (and no start record) that holds trained work is refused, unchanged."""
        found = self.trained_work()
        if not found:
            return
        raise RunDirError(
            f"{self.path} has no checkpoints/last.pt, but holds trained work: {'; '.join(found)}. "
            "Nothing was changed. --resume needs last.pt (the optimizer, schedule and random state; best.pt "
            "and step checkpoints keep only weights), so this run cannot continue in place: put last.pt back "
            f"(from a backup) and run again with --resume, or start a new run with another --output-dir. "
            f"The weights stay usable: seq2seq-rnn translate/evaluate {self.path} --checkpoint {_usable(self)}"
        )

    # -- the writer lock ----------------------------------------------------
    @contextlib.contextmanager
    def lock(self, command: str) -> Iterator[None]:
        """Hold the writer lock of this run for the block; fail at once if another process holds it.

        Re-entrant within one process (the Ray driver and the Trainer it runs share it).
        """
        if not self.is_ours():
            raise RunDirError(f"{self.path} is not a seq2seq_rnn run directory (no {MARKER_NAME})")
        self.check_no_links()
        key = self.path.resolve()
        held = _HELD.get(key)
        if held is not None:
            held[1] += 1
            try:
                yield
            finally:
                held[1] -= 1
            return
        fd = self._acquire(command)
        _HELD[key] = [fd, 1]
        try:
            yield
        finally:
            del _HELD[key]
            os.close(fd)  # releases the lock (the only descriptor of this file the process has open)

    def _check_entries(self) -> None:
        """Refuse a run whose files that training writes as it goes are folders or special files (a
        ``metrics.jsonl/`` folder, a FIFO as ``train.log``): found before any work, not as a traceback
        when the first line is appended. (scores.json and README.md are written after the work, and a
        failure there is reported without losing what was computed.)"""
        for path in (self.lock_file, self.recipe, self.metrics, self.data_counts, self.log):
            if path.exists() and not path.is_file():
                kind = "a folder" if path.is_dir() else "not a regular file"
                raise RunDirError(
                    f"{path} is {kind}; seq2seq_rnn keeps a file of that name in its run directory. "
                    f"Move it out of {self.path} and run again"
                )

    def _acquire(self, command: str) -> int:
        try:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as exc:
            raise RunDirError(f"cannot write to the run directory {self.path}: {exc}") from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                os.close(fd)
                raise RunDirError(f"cannot lock the run directory {self.path}: {exc}") from None
            holder = _read_holder(fd)
            os.close(fd)
            raise RunDirError(
                f"{self.path} is in use by another process ({holder}); only one process may write a run "
                "at a time. Wait for it to finish (the lock goes with it, even if it is killed), "
                "or use another folder"
            ) from None
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} (seq2seq-rnn {command}, since {since})\n".encode(), 0)
        return fd


def _usable(run: RunDir) -> str:
    """What ``--checkpoint`` names the best weights left in a run without last.pt."""
    if run.best.is_file():
        return "best"
    steps = run.kept_checkpoints()
    return str(steps[-1]) if steps else "FILE"


def _step_of(path: Path) -> str:
    """`` (step N)`` from a checkpoint's counters, or nothing when it cannot be read."""
    try:
        step = load_checkpoint(path).get("progress", {}).get("step")
    except CheckpointError:
        return " (unreadable)"
    return f" (step {step})" if isinstance(step, int) else ""


def _read_holder(fd: int) -> str:
    """The holder's line; it writes it right after locking, so wait a moment if it is still empty."""
    for _ in range(20):
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
        if text:
            return text
        time.sleep(0.05)
    return "pid unknown"


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a metrics.jsonl, in order; [] when there is none.

    The one reader of this file (training's resume, plots, the model card). Lines are
    appended one write at a time, so a kill or a full disk can only cut the last line
    short: that line is skipped. A bad line anywhere else is a CheckpointError naming it.
    """
    if not path.exists():
        return []
    if not path.is_file():
        raise CheckpointError(f"{path} is {'a folder' if path.is_dir() else 'not a regular file'}, not a metrics file")
    lines = [(n, line) for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").split("\n"), 1)]
    lines = [(n, line) for n, line in lines if line.strip()]
    rows = []
    for i, (number, line) in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if i == len(lines) - 1:
                break  # cut short while being written
            raise CheckpointError(f"{path}:{number}: not a JSON line ({exc}); remove or repair that line") from None
        if not isinstance(record, dict):
            raise CheckpointError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        rows.append(record)
    return rows


def _first_names(names: list[str], shown: int = 5) -> str:
    """``a, b, c, d, e and 3 more``: a folder's entries named in a refusal."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
