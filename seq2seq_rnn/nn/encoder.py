"""Deep (optionally bidirectional) recurrent encoder."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from seq2seq_rnn.cells import build_cell
from seq2seq_rnn.cells.base import step_loop
from seq2seq_rnn.nn.layers import reverse_padded


class Encoder(nn.Module):
    """Embeds src (B, S) and runs ``layers`` stacked cells over it.

    Each layer's output (both directions concatenated when bidirectional) goes
    through dropout and, from the second layer on, a residual connection.
    ``fused=False`` forces the step-by-step reference path (for tests).
    """

    def __init__(
        self,
        vocab_size: int,
        cell: str,
        cell_options: dict[str, Any],
        embedding_size: int,
        hidden_size: int,
        layers: int,
        bidirectional: bool,
        residual: bool,
        dropout: float,
        embedding_dropout: float,
        padding_idx: int = 0,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embedding_size, padding_idx=padding_idx)
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        self.dropout = nn.Dropout(dropout)
        self.residual = residual
        self.bidirectional = bidirectional
        self.output_size = hidden_size * (2 if bidirectional else 1)
        self.padding_idx = padding_idx
        self.fused = True
        sizes = [embedding_size] + [self.output_size] * (layers - 1)
        self.forward_cells = nn.ModuleList(
            build_cell(cell, size, hidden_size, cell_options, "model.encoder") for size in sizes
        )
        self.backward_cells = (
            nn.ModuleList(build_cell(cell, size, hidden_size, cell_options, "model.encoder") for size in sizes)
            if bidirectional
            else None
        )

    def _run(self, cell: nn.Module, x: Tensor, lengths: Tensor) -> Tensor:
        state = cell.initial_state(x.size(0), x.device, x.dtype)
        if self.fused:
            out, _ = cell.forward_sequence(x, state, lengths)
        else:
            out, _ = step_loop(cell, x, state, lengths)
        return out  # (B, S, H), zero past each length

    def forward(self, src: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """src (B, S), lengths (B,) → memory (B, S, D), mask (B, S), summary (B, D)."""
        mask = src != self.padding_idx
        x = self.embedding_dropout(self.embed(src))  # (B, S, E)
        for layer, fwd in enumerate(self.forward_cells):
            out = self._run(fwd, x, lengths)
            if self.backward_cells is not None:
                bwd = self._run(self.backward_cells[layer], reverse_padded(x, lengths), lengths)
                out = torch.cat([out, reverse_padded(bwd, lengths)], dim=-1)  # (B, S, 2H)
            out = self.dropout(out)
            x = out + x if self.residual and layer > 0 else out
        memory = x * mask.unsqueeze(-1)
        summary = memory.sum(1) / lengths.to(memory.dtype).clamp(min=1).unsqueeze(1)  # (B, D)
        return memory, mask, summary
