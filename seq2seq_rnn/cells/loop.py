"""The time loop shared by every step-by-step sequence path."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

StepFn = Callable[..., tuple[Tensor, tuple[Tensor, ...]]]


def masked_steps(
    step: StepFn, inputs: Sequence[tuple[Tensor, ...]], state: tuple[Tensor, ...], lengths: Tensor | None
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Apply ``step(*inputs[t], state) -> (h, state)`` for t = 0..T-1 → outputs (B, T, H), final state.

    With ``lengths`` (B,), a sentence's state is frozen after its last token and
    its outputs there are zero, so padding never changes a result.
    """
    outputs = []
    for t, step_inputs in enumerate(inputs):
        h, new_state = step(*step_inputs, state)
        if lengths is not None:
            alive = (t < lengths).unsqueeze(1)  # (B, 1)
            h = h * alive
            new_state = tuple(torch.where(alive, n, s) for n, s in zip(new_state, state, strict=True))
        outputs.append(h)
        state = new_state
    return torch.stack(outputs, dim=1), state
