"""What a training run carries from step to step: counters, the learning-rate schedule, the
logging window and the RNG states (all of it in ``checkpoints/last.pt``), and the ``Hooks``
a distributed runner plugs in."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from seq2seq_rnn.config import SchedulerConfig


@dataclass
class Progress:
    """Counters restored on resume (besides the tensors)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_bleu: float = -1.0
    best_step: int = 0
    bad_validations: int = 0
    nonfinite_steps: int = 0
    train_seconds: float = 0.0
    finished: bool = False
    validation_due: bool = False  # a validation was stopped by a signal: resume runs it first

    def update_from(self, saved: dict[str, Any]) -> None:
        """Take the counters of a checkpoint, in place (every part of a run shares this object)."""
        vars(self).update(vars(Progress(**saved)))


class LRSchedule:
    """Linear warm-up to the base rate, then ×factor when validation BLEU plateaus."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, cfg: SchedulerConfig) -> None:
        self.optimizer, self.base_lr, self.cfg = optimizer, base_lr, cfg
        self.scale, self.best, self.bad = 1.0, -math.inf, 0

    def lr(self, step: int) -> float:
        warm = min(1.0, (step + 1) / self.cfg.warmup_steps) if self.cfg.warmup_steps else 1.0
        return max(self.base_lr * self.scale, self.cfg.min_lr) * warm

    def apply(self, step: int) -> float:
        lr = self.lr(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def observe(self, metric: float) -> bool:
        """Record a validation score; returns True when the rate was decayed."""
        if metric > self.best:
            self.best, self.bad = metric, 0
            return False
        self.bad += 1
        if self.bad <= self.cfg.plateau_patience:
            return False
        self.scale *= self.cfg.plateau_factor
        self.bad = 0
        return True

    def state_dict(self) -> dict[str, float]:
        return {"scale": self.scale, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.scale, self.best, self.bad = state["scale"], state["best"], int(state["bad"])


class Window:
    """Loss and speed since the last log line; checkpointed, so a resume logs it whole."""

    def __init__(self, loss_sum: float = 0.0, tokens: int = 0, seconds: float = 0.0) -> None:
        self.loss_sum, self.tokens, self.seconds = loss_sum, tokens, seconds

    def reset(self) -> None:
        self.loss_sum, self.tokens, self.seconds = 0.0, 0, 0.0

    def add(self, loss: float, tokens: int, seconds: float) -> None:
        self.loss_sum += loss
        self.tokens += tokens
        self.seconds += seconds

    def loss(self) -> float:
        return self.loss_sum / max(self.tokens, 1)

    def rate(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def state_dict(self) -> dict[str, float]:
        return {"loss_sum": self.loss_sum, "tokens": self.tokens, "seconds": self.seconds}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.loss_sum, self.tokens, self.seconds = (
            float(state["loss_sum"]),
            int(state["tokens"]),
            float(state["seconds"]),
        )


def _identity(x: Any) -> Any:
    return x


@dataclass
class Hooks:
    """What a distributed runner plugs into the loop (defaults: one process)."""

    rank: int = 0
    world_size: int = 1
    wrap_model: Callable[[nn.Module], nn.Module] = _identity
    all_reduce_sum: Callable[[Tensor], Tensor] = _identity
    report: Callable[[dict[str, Any], Path | None], None] | None = None
    device: torch.device | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
