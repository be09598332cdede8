"""One optimizer update: autocast, loss scaling, gradient clipping and the non-finite skip."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq_rnn.config import TrainConfig
from seq2seq_rnn.data.batching import Batch
from seq2seq_rnn.data.tokenizer import PAD_ID
from seq2seq_rnn.errors import TrainingError
from seq2seq_rnn.training.state import Hooks, LRSchedule, Progress

log = logging.getLogger("seq2seq_rnn.train")


def token_loss(logits: Tensor, target: Tensor, label_smoothing: float) -> tuple[Tensor, Tensor]:
    """logits (B, T, V), target (B, T) → summed loss over non-pad tokens, token count."""
    loss = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(),
        target.reshape(-1),
        ignore_index=PAD_ID,
        label_smoothing=label_smoothing,
        reduction="sum",
    )
    return loss, (target != PAD_ID).sum()


def autocast(cfg: TrainConfig, device: torch.device) -> Any:
    """The mixed-precision context of ``train.amp`` (a no-op for 'none')."""
    dtype = torch.bfloat16 if cfg.amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype, enabled=cfg.amp != "none")


def load_scaler_state(scaler: torch.amp.GradScaler, state: dict[str, Any]) -> None:
    """Restore fp16 loss scaling. A run started with amp 'none' saved an empty state (a disabled
    scaler's), which GradScaler.load_state_dict refuses: scaling then starts afresh."""
    if not scaler.is_enabled():
        return
    if not state:
        log.info("the checkpoint has no loss-scaling state (trained without amp 'fp16'); it starts afresh")
        return
    scaler.load_state_dict(state)


class Updater:
    """Turns a batch into one update of ``model``'s weights, or a skipped, counted step.

    ``train_model`` is what the forward pass runs (the model wrapped by a distributed
    runner); ``model`` the plain module whose gradients are clipped.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        model: nn.Module,
        train_model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: LRSchedule,
        hooks: Hooks,
        device: torch.device,
    ) -> None:
        self.cfg, self.model, self.train_model = cfg, model, train_model
        self.optimizer, self.schedule, self.hooks, self.device = optimizer, schedule, hooks, device
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp == "fp16" and device.type == "cuda")

    def step(self, batch: Batch, progress: Progress, saved: Callable[[], str]) -> tuple[float, int]:
        """One update; returns (summed loss, target tokens), (0.0, 0) for a skipped non-finite step.

        ``saved()`` says where the last good state is, for the error past the non-finite limit.
        """
        self.train_model.train()
        self.schedule.apply(progress.step)
        with autocast(self.cfg, self.device):
            logits = self.train_model(batch.src, batch.src_lengths, batch.tgt_in)
        loss_sum, ntok = token_loss(logits, batch.tgt_out, self.cfg.label_smoothing)
        total = self.hooks.all_reduce_sum(ntok.detach().float().clone())
        # Gradients are averaged over all workers' tokens: scale by world/total.
        self.scaler.scale(loss_sum * (self.hooks.world_size / total.clamp(min=1))).backward()
        self.scaler.unscale_(self.optimizer)
        norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_norm or float("inf"))
        if not torch.isfinite(loss_sum) or (not torch.isfinite(norm) and not self.scaler.is_enabled()):
            self._skip_nonfinite(progress, saved)
            return 0.0, 0
        # With fp16 loss scaling, overflowing gradients are routine: scaler.step skips them.
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss_sum.detach()), int(ntok)

    def _skip_nonfinite(self, p: Progress, saved: Callable[[], str]) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.update()
        p.nonfinite_steps += 1
        log.warning("step %d: non-finite loss or gradient, update skipped (%d so far)", p.step + 1, p.nonfinite_steps)
        if p.nonfinite_steps > self.cfg.max_nonfinite_steps:
            raise TrainingError(
                f"{p.nonfinite_steps} steps had non-finite loss or gradients (limit train.max_nonfinite_steps="
                f"{self.cfg.max_nonfinite_steps}); lower train.optimizer.lr or check the data. {saved()}."
            )
