"""The layout of a run directory, shared by training, translation and evaluation.

RUN_DIR/
  recipe.yaml          the resolved recipe (every default filled in)
  tokenizer/           sentencepiece model(s)
  checkpoints/last.pt  latest training state (model, optimizer, RNG, ...)
  checkpoints/best.pt  weights with the best validation BLEU
  metrics.jsonl        one JSON object per logged step or validation
  train.log            the training log
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
