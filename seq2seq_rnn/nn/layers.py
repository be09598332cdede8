"""Helpers shared by encoder and decoder: stacks of cells, reversal, state layout."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from seq2seq_rnn.cells import State


def residual_stack(
    x: Tensor,
    layers: int,
    run_layer: Callable[[int, Tensor], Tensor],
    dropout: Callable[[Tensor], Tensor],
    residual: bool,
) -> Tensor:
    """x (B, ·, F) through ``layers`` stacked layers (``run_layer(layer, input)``): each
    layer's output goes through dropout and, from the second layer on, is added to the
    layer's input when ``residual``. The one stack of encoder, decoder and export."""
    for layer in range(layers):
        out = dropout(run_layer(layer, x))
        x = out + x if residual and layer > 0 else out
    return x


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of x (B, T, F) within its length; padding stays at the end.
    ``lengths=None``: no padding, every sequence is reversed whole."""
    if lengths is None:
        return x.flip(1)
    steps = torch.arange(x.size(1), device=x.device).unsqueeze(0)  # (1, T)
    last = (lengths.to(x.device) - 1).unsqueeze(1)  # (B, 1)
    index = torch.where(steps <= last, last - steps, steps)  # (B, T)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


def flatten_states(states: list[State]) -> tuple[Tensor, ...]:
    return tuple(t for state in states for t in state)


def unflatten_states(flat: tuple[Tensor, ...], sizes: list[int]) -> list[State]:
    out, start = [], 0
    for n in sizes:
        out.append(tuple(flat[start : start + n]))
        start += n
    return out
