"""Dropout over sequences: a fresh mask per element, or one mask per sequence.

``variational`` is the locked dropout of Gal & Ghahramani (2016): a sequence keeps
the same units dropped at every time step, so the network cannot average the
noise away over time. It is applied to what enters and leaves each recurrent
layer (embeddings, layer outputs), outside the cell: plugin cells get it for
free and the built-ins keep their fused kernels. Dropping the recurrent
connection h(t-1) → h(t) itself would need the cell's step loop (about 2× the
fused kernel's time in tools/bench.py), so it is not done here.

Shapes: x (B, T, D) for a whole sequence, or (B, D) for one step.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

DropoutMode = Literal["standard", "variational"]


class SequenceDropout(nn.Module):
    """``standard``: ``nn.Dropout``. ``variational``: one (B, 1, D) mask per sequence."""

    def __init__(self, p: float, mode: DropoutMode = "standard") -> None:
        super().__init__()
        if mode not in ("standard", "variational"):
            raise ValueError(f"dropout mode {mode!r}; valid: 'standard', 'variational'")
        self.p, self.mode = p, mode

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"

    @property
    def active(self) -> bool:
        return self.training and self.p > 0

    def sample_mask(self, batch: int, size: int, like: Tensor) -> Tensor | None:
        """A (B, D) mask, already scaled by 1/(1-p), to reuse at every step of a
        sequence (the step-by-step path); None where no mask is needed."""
        if not self.active or self.mode != "variational":
            return None
        return keep_mask((batch, size), self.p, like)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is not None:  # a sequence's locked mask, reused step by step
            return x * (mask.unsqueeze(1) if x.dim() == 3 else mask)
        if not self.active:
            return x
        if self.mode == "standard" or x.dim() == 2:  # a lone step is a sequence of one
            return x * keep_mask(x.shape, self.p, x)
        return x * keep_mask((x.size(0), 1, x.size(-1)), self.p, x)  # (B, 1, D)


def keep_mask(shape: tuple[int, ...] | torch.Size, p: float, like: Tensor) -> Tensor:
    """A mask of ``like``'s dtype and device: 1/(1-p) with probability 1-p, else 0.

    Drawn as uniform numbers compared with p: on the CPU this is ~2.5× faster than
    ``bernoulli_`` (what ``F.dropout`` uses), which was a tenth of a bf16 training step."""
    return torch.rand(shape, device=like.device).ge_(p).mul_(1.0 / (1.0 - p)).to(like.dtype)
