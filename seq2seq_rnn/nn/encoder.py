"""Deep (optionally bidirectional) recurrent encoder."""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from seq2seq_rnn.cells import CellFactory
from seq2seq_rnn.cells.base import RecurrentCell, step_loop
from seq2seq_rnn.config import EncoderConfig
from seq2seq_rnn.nn.dropout import SequenceDropout
from seq2seq_rnn.nn.layers import residual_stack, reverse_padded


class Encoder(nn.Module):
    """Embeds src (B, S) and runs ``config.layers`` stacked cells over it.

    Each layer's output (both directions concatenated when bidirectional) goes
    through dropout and, from the second layer on, a residual connection.
    ``config.dropout_mode: variational`` keeps one mask per sequence (nn/dropout.py).
    ``cell`` builds the cells (default: resolved from ``config.cell``).
    ``fused=False`` forces the step-by-step reference path (for tests).
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        config: EncoderConfig | None = None,
        cell: CellFactory | None = None,
        padding_idx: int = 0,
    ) -> None:
        super().__init__()
        cfg = config or EncoderConfig()
        cell = cell or CellFactory.resolve(cfg.cell, cfg.cell_options, "model.encoder")
        self.embed = nn.Embedding(vocab_size, cfg.embedding_size, padding_idx=padding_idx)
        self.embedding_dropout = SequenceDropout(cfg.embedding_dropout, cfg.dropout_mode)
        self.dropout = SequenceDropout(cfg.dropout, cfg.dropout_mode)
        self.residual = cfg.residual
        self.bidirectional = cfg.bidirectional
        self.output_size = cfg.output_size
        self.padding_idx = padding_idx
        self.fused = True
        sizes = [cfg.embedding_size] + [self.output_size] * (cfg.layers - 1)
        self.forward_cells = nn.ModuleList(cell(size, cfg.hidden_size) for size in sizes)
        self.backward_cells = (
            nn.ModuleList(cell(size, cfg.hidden_size) for size in sizes) if cfg.bidirectional else None
        )

    def _run(self, cell: RecurrentCell, x: Tensor, lengths: Tensor | None) -> Tensor:
        state = cell.initial_state(x.size(0), x.device, x.dtype)
        if self.fused:
            out = cell.forward_outputs(x, state, lengths)  # the final state is not needed
        else:
            out, _ = step_loop(cell, x, state, lengths)
        return out  # (B, S, H), zero past each length

    def _layer(self, layer: int, x: Tensor, lengths: Tensor | None) -> Tensor:
        out = self._run(self.forward_cells[layer], x, lengths)
        if self.backward_cells is not None:
            bwd = self._run(self.backward_cells[layer], reverse_padded(x, lengths), lengths)
            out = torch.cat([out, reverse_padded(bwd, lengths)], dim=-1)  # (B, S, 2H)
        return out

    def stack(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        """Embedded x (B, S, E) → top layer's outputs (B, S, D). ``lengths=None``: no
        padding (the export's one-sentence encoder), so nothing is packed."""
        run = partial(self._layer, lengths=lengths)
        return residual_stack(x, len(self.forward_cells), run, self.dropout, self.residual)

    def forward(self, src: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """src (B, S), lengths (B,) → memory (B, S, D), mask (B, S), summary (B, D)."""
        mask = src != self.padding_idx
        x = self.stack(self.embedding_dropout(self.embed(src)), lengths)  # (B, S, D)
        memory = x * mask.unsqueeze(-1)
        summary = memory.sum(1) / lengths.to(memory.dtype).clamp(min=1).unsqueeze(1)  # (B, D)
        return memory, mask, summary
