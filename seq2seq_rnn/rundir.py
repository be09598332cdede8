"""The layout of a run directory, shared by training, translation and evaluation.

RUN_DIR/
  recipe.yaml          the resolved recipe (every default filled in)
  tokenizer/           sentencepiece model(s)
  checkpoints/last.pt  latest training state (model, optimizer, RNG, ...)
  checkpoints/best.pt  weights with the best validation BLEU
  metrics.jsonl        one JSON object per logged step or validation (read with read_metrics)
  data.json            pair counts as loaded: read, kept, dropped (for the model card)
  train.log            the training log
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seq2seq_rnn.config import Recipe, load_recipe
from seq2seq_rnn.errors import CheckpointError


@dataclass(frozen=True)
class RunDir:
    path: Path

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

    def read_metrics(self) -> list[dict[str, Any]]:
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

    def step_checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:08d}.pt"

    def kept_checkpoints(self) -> list[Path]:
        """Step checkpoints kept by ``train.keep_checkpoints``, oldest first."""
        return sorted(self.checkpoints.glob("step-*.pt"))

    def has_training_state(self) -> bool:
        return self.last.is_file()

    def load_recipe(self) -> Recipe:
        if not self.recipe.is_file():
            raise CheckpointError(f"{self.path} is not a run directory (no recipe.yaml)")
        return load_recipe(self.recipe)

    def checkpoint(self, which: str) -> Path:
        """``best``, ``last``, or a path to a checkpoint file."""
        if which in ("best", "last"):
            path = self.best if which == "best" else self.last
            if which == "best" and not path.is_file() and self.last.is_file():
                return self.last  # no validation happened yet
            return path
        return Path(which)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a metrics.jsonl, in order; [] when there is none.

    The one reader of this file (training's resume, plots, the model card). Lines are
    appended one write at a time, so a kill or a full disk can only cut the last line
    short: that line is skipped. A bad line anywhere else is a CheckpointError naming it.
    """
    if not path.is_file():
        return []
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
