"""Checkpoint averaging and ensemble decoding.

``average_state_dicts`` gives the element-wise mean of several checkpoints of
one model. ``Ensemble`` decodes with several models at once by averaging their
output distributions; it implements the same ``encode``/``decode_step``
protocol as :class:`~seq2seq_rnn.model.Seq2Seq`, so greedy and beam search use
it unchanged. Its memory and state are the members' flat tuples concatenated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from seq2seq_rnn.errors import CheckpointError
from seq2seq_rnn.model import Seq2Seq
from seq2seq_rnn.nn.decoder import Memory


def average_state_dicts(states: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Element-wise mean of state dicts with identical keys and shapes."""
    if not states:
        raise CheckpointError("checkpoint averaging needs at least one checkpoint")
    keys = list(states[0])
    for i, state in enumerate(states[1:], start=2):
        if list(state) != keys or any(state[k].shape != states[0][k].shape for k in keys):
            raise CheckpointError(f"checkpoint {i} does not have the same parameters as the first; cannot average")
    out = {}
    for key in keys:
        first = states[0][key]
        if first.is_floating_point():
            out[key] = torch.stack([s[key].to(torch.float64) for s in states]).mean(0).to(first.dtype)
        else:
            out[key] = first.clone()  # integer buffers (e.g. counters) are taken from the first
    return out


class Ensemble(nn.Module):
    """Average the probabilities of several models sharing one target vocabulary."""

    def __init__(self, models: Sequence[Seq2Seq]) -> None:
        super().__init__()
        if not models:
            raise CheckpointError("an ensemble needs at least one model")
        self.members = nn.ModuleList(models)
        self._state_sizes: list[int] = []

    def encode(self, src: Tensor, lengths: Tensor) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        memories: list[Tensor] = []
        states: list[Tensor] = []
        self._state_sizes = []
        for model in self.members:
            mem, state = model.encode(src, lengths)
            memories.extend(mem)
            states.extend(state)
            self._state_sizes.append(len(state))
        return tuple(memories), tuple(states)

    def decode_step(
        self, prev: Tensor, state: tuple[Tensor, ...], memory: tuple[Tensor, ...], rows: Tensor | None = None
    ) -> tuple[Tensor, tuple[Tensor, ...], Tensor | None]:
        """Log of the mean member probability (N, V), or (R, V) for ``rows``: log_softmax leaves it unchanged."""
        log_probs, new_state, attention, start = [], [], None, 0
        for i, (model, size) in enumerate(zip(self.members, self._state_sizes, strict=True)):
            width = len(Memory._fields)
            mem = Memory(*memory[width * i : width * (i + 1)])
            logits, s, attn = model.decode_step(prev, state[start : start + size], mem, rows)
            log_probs.append(torch.log_softmax(logits.float(), dim=-1))
            new_state.extend(s)
            attention = attn if attention is None else attention
            start += size
        mean = torch.logsumexp(torch.stack(log_probs), dim=0) - math.log(len(self.members))
        return mean, tuple(new_state), attention


def average_checkpoints(paths: Sequence[Path], output: Path) -> Path:
    """Write the mean of several checkpoints' model weights as a new checkpoint."""
    from seq2seq_rnn.run.checkpoint import load_checkpoint, save_checkpoint

    if not paths:
        raise CheckpointError("no checkpoints to average")
    payloads = [load_checkpoint(p) for p in paths]
    prints = {str(p.get("fingerprint")) for p in payloads if p.get("fingerprint") is not None}
    if len(prints) > 1:
        raise CheckpointError("the checkpoints come from runs with different tokenizers or models; cannot average")
    averaged = {"model": average_state_dicts([p["model"] for p in payloads]), "averaged_from": [str(p) for p in paths]}
    if payloads[0].get("fingerprint") is not None:
        averaged["fingerprint"] = payloads[0]["fingerprint"]
    save_checkpoint(output, averaged)
    return output
