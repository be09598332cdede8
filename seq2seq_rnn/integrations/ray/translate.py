"""Batch translation as a Ray Data stage.

:class:`TranslateBatch` is a callable class for ``Dataset.map_batches``: Ray
builds it once per actor (loading the model once) and calls it on batches of
rows; it reads a text column and adds a translation column. Each call goes
through the same corpus-decoding path as ``seq2seq-rnn translate`` (length-sorted
batches, live-work search, input order restored), so the output equals
single-process translation for the same settings::

    import ray
    from seq2seq_rnn.integrations.ray import TranslateBatch

    ds = ray.data.read_text("news.de", drop_empty_lines=False)
    ds = ds.map_batches(
        TranslateBatch,
        fn_constructor_kwargs={"run_dir": "runs/multi30k_de_en_lstm", "beam_size": 5},
        compute=ray.data.ActorPoolStrategy(size=4),  # 4 actors (older Ray: concurrency=4)
        num_cpus=1,           # per actor (or num_gpus=1 with device="cuda")
        batch_size=512,       # rows per call; decoding batches are cut from them by length
    )
    ds.write_json("out/")

:func:`translate_files` is ``seq2seq-rnn translate RUN_DIR --ray --input FILES
--output DIR``: one output file per input file, line for line.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.data

from seq2seq_rnn.errors import DataError
from seq2seq_rnn.inference.translator import Translator
from seq2seq_rnn.run.directory import RunDir
from seq2seq_rnn.run.outputs import OutputFolder

log = logging.getLogger("seq2seq_rnn.integrations.ray")


class TranslateBatch:
    """A Ray Data ``map_batches`` stage: ``text_column`` in, ``translation_column`` out.

    Constructor keywords (``fn_constructor_kwargs``): ``run_dir``, and optionally
    ``checkpoint``, ``device`` (``auto`` uses the actor's GPU when Ray gave it one),
    ``quantize`` ('int8' on CPU actors), ``beam_size``, ``batch_size`` (sentences per
    decoding batch), ``length_penalty``, ``threads`` (torch threads; default: the
    actor's CPUs), and the column names. Other columns pass through unchanged.
    """

    def __init__(
        self,
        run_dir: str | Path,
        checkpoint: str = "best",
        device: str = "auto",
        quantize: str = "none",
        beam_size: int | None = None,
        batch_size: int | None = None,
        length_penalty: float | None = None,
        threads: int | None = None,
        text_column: str = "text",
        translation_column: str = "translation",
    ) -> None:
        import torch

        if threads or os.environ.get("OMP_NUM_THREADS"):  # Ray sets it to the actor's CPUs
            torch.set_num_threads(threads or int(os.environ["OMP_NUM_THREADS"]))
        self.translator = Translator.load(run_dir, checkpoint, device, quantize)
        self.settings = {"beam_size": beam_size, "batch_size": batch_size, "length_penalty": length_penalty}
        self.text_column = text_column
        self.translation_column = translation_column

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.text_column not in batch:
            raise DataError(f"TranslateBatch: no column {self.text_column!r}; columns: {', '.join(batch)}")
        texts = [str(t) for t in batch[self.text_column]]
        out = self.translator.translate(texts, **self.settings)
        return {**batch, self.translation_column: np.array(out, dtype=object)}


def translate_files(
    run_dir: str | Path,
    inputs: Sequence[str | Path],
    output_dir: str | Path,
    *,
    actors: int = 1,
    cpus_per_actor: float = 1,
    gpus_per_actor: float = 0,
    rows_per_call: int = 512,
    address: str | None = None,
    **translate: Any,
) -> list[Path]:
    """Translate each input file into ``output_dir/<its name>`` with ``actors`` Ray actors.

    Lines stay in order and empty lines stay empty; ``translate`` holds
    :class:`TranslateBatch`'s keywords (checkpoint, beam_size, quantize, ...).
    Returns the output paths, in input order.
    """
    paths = [Path(p).resolve() for p in inputs]
    for path in paths:
        if not path.is_file():
            raise DataError(f"--input {path}: no such file")
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        raise DataError("--input files must have distinct names: each gives OUTPUT_DIR/<name>")
    folder = OutputFolder(Path(output_dir), "translate --ray", [*paths, Path(run_dir)])
    folder.check(names)  # an input, a user's file or a symlink at OUTPUT/<name>: refused before Ray starts
    RunDir(Path(run_dir)).load_recipe()  # so is a bad recipe, or plugins the user has not allowed
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, logging_level=logging.WARNING)
    try:
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        lines = [_read_lines(path) for path in paths]
        return _translate_lines(
            lines, names, folder, run_dir, actors, cpus_per_actor, gpus_per_actor, rows_per_call, translate
        )
    finally:
        if started:
            ray.shutdown()


def _translate_lines(
    lines: list[list[str]],
    names: list[str],
    folder: OutputFolder,
    run_dir: str | Path,
    actors: int,
    cpus: float,
    gpus: float,
    rows_per_call: int,
    translate: dict[str, Any],
) -> list[Path]:
    """All files' lines as one dataset (a ``file`` column says whose), so the actors load the model once.
    Each file's translation goes to a temporary file first (a name no user file has), then to its place."""
    items = [{"file": f, "text": line} for f, file_lines in enumerate(lines) for line in file_lines]
    folder.folder.mkdir(parents=True, exist_ok=True)
    made = [tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder.folder) for name in names]
    parts = [Path(path) for _, path in made]
    handles = [os.fdopen(fd, "w", encoding="utf-8") for fd, _ in made]
    counts = [0] * len(names)
    try:
        if items:
            ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items) // rows_per_call + 1, 64)))
            ds = ds.map_batches(
                TranslateBatch,
                fn_constructor_kwargs={"run_dir": str(Path(run_dir).resolve()), **translate},
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=cpus,
                num_gpus=gpus,
                batch_size=rows_per_call,
            )
            for batch in ds.iter_batches(batch_size=rows_per_call, batch_format="numpy"):
                for f, text in zip(batch["file"].tolist(), batch["translation"], strict=True):
                    handles[f].write(str(text).replace("\n", " ") + "\n")
                    counts[f] += 1
    finally:
        for handle in handles:
            handle.close()
    outs = []
    try:
        for file_lines, count, part, name in zip(lines, counts, parts, names, strict=True):
            if count != len(file_lines):
                raise DataError(f"{name}: {len(file_lines)} lines in but {count} translations out")
            outs.append(folder.write(name, lambda tmp, part=part: part.replace(tmp)))
            log.info("%d lines → %s", count, outs[-1])
    finally:
        for part in parts:
            part.unlink(missing_ok=True)
    return outs


def _read_lines(path: Path) -> list[str]:
    """The file's lines as ``translate`` reads stdin: split on newlines, CR stripped, no trailing empty line."""
    with path.open(encoding="utf-8", errors="replace", newline="\n") as handle:
        return [line.rstrip("\r\n") for line in handle]
