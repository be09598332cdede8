"""Deep recurrent decoder with attention, input feeding and tied embeddings.

The decoder state seen by search is a flat tuple of (B, ·) tensors: every
layer's cell state, then the input-feeding vector when enabled. Beam search
reorders it with one ``index_select`` per tensor, whatever the cell.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from seq2seq_rnn.cells import CellFactory, State
from seq2seq_rnn.cells.fast import deferred_weight_grads
from seq2seq_rnn.config import AttentionConfig, DecoderConfig
from seq2seq_rnn.nn.attention import build_attention
from seq2seq_rnn.nn.dropout import SequenceDropout
from seq2seq_rnn.nn.layers import flatten_states, residual_stack, unflatten_states


class Memory(NamedTuple):
    """What the decoder reads from the encoder, computed once per source batch."""

    memory: Tensor  # (B, S, D)
    keys: Tensor  # (B, S, K): attention-specific projection of memory
    mask: Tensor  # (B, S) True at real tokens


class _Masks(NamedTuple):
    """Locked dropout masks (B, ·) for decoding a batch step by step; None: none needed."""

    embedding: Tensor | None
    layers: list[Tensor | None]
    output: Tensor | None


class Decoder(nn.Module):
    """Stacked cells reading a memory (B, S, ``memory_size``) through the attention
    that ``attention`` configures (None or type 'none': no attention, so the source
    reaches the decoder only through its initial state). ``cell`` builds the cells
    (default: resolved from ``config.cell``)."""

    def __init__(
        self,
        *,
        vocab_size: int,
        memory_size: int,
        config: DecoderConfig | None = None,
        attention: AttentionConfig | None = None,
        cell: CellFactory | None = None,
        padding_idx: int = 0,
    ) -> None:
        super().__init__()
        cfg = config or DecoderConfig()
        cell = cell or CellFactory.resolve(cfg.cell, cfg.cell_options, "model.decoder")
        hidden = cfg.hidden_size
        self.embed = nn.Embedding(vocab_size, cfg.embedding_size, padding_idx=padding_idx)
        self.embedding_dropout = SequenceDropout(cfg.embedding_dropout, cfg.dropout_mode)
        self.dropout = SequenceDropout(cfg.dropout, cfg.dropout_mode)
        self.output_dropout = SequenceDropout(cfg.output_dropout, cfg.dropout_mode)
        self.embedding_size = cfg.embedding_size
        self.residual = cfg.residual
        self.input_feeding = cfg.input_feeding
        self.hidden_size = hidden
        self.fused = True
        sizes = [cfg.embedding_size + (hidden if cfg.input_feeding else 0)] + [hidden] * (cfg.layers - 1)
        self.cells = nn.ModuleList(cell(size, hidden) for size in sizes)
        att = build_attention(attention, query_size=hidden, memory_size=memory_size) if attention is not None else None
        self.attention = att
        self.combine = nn.Linear(hidden + memory_size, hidden) if att is not None else None
        self.output = nn.Linear(hidden, vocab_size)
        if cfg.tie_embeddings:
            self.output.weight = self.embed.weight
        probe = [c.initial_state(1, "cpu", torch.float32) for c in self.cells]
        self.state_sizes = [len(s) for s in probe]
        self.bridge = _bridge(probe, memory_size) if cfg.bridge else None

    # -- state ---------------------------------------------------------------
    def prepare(self, memory: Tensor, mask: Tensor) -> Memory:
        keys = self.attention.prepare(memory) if self.attention is not None else memory
        return Memory(memory, keys, mask)

    def initial_state(self, summary: Tensor) -> tuple[Tensor, ...]:
        """summary (B, D) of the source → flat decoder state."""
        batch = summary.size(0)
        states: list[State] = []
        for layer, cell in enumerate(self.cells):
            state = cell.initial_state(batch, summary.device, summary.dtype)
            if self.bridge is not None:
                state = tuple(
                    s if isinstance(proj, nn.Identity) else torch.tanh(proj(summary))  # any Linear, int8 too
                    for proj, s in zip(self.bridge[layer], state, strict=True)
                )
            states.append(state)
        feed = (summary.new_zeros(batch, self.hidden_size),) if self.input_feeding else ()
        return flatten_states(states) + feed

    def _split(self, flat: tuple[Tensor, ...]) -> tuple[list[State], Tensor | None]:
        n = sum(self.state_sizes)
        return unflatten_states(flat[:n], self.state_sizes), (flat[n] if self.input_feeding else None)

    # -- computation ---------------------------------------------------------
    def _attend(self, top: Tensor, mem: Memory) -> tuple[Tensor, Tensor | None]:
        """top (B, T, H) → attentional vectors (B, T, H), weights (B, T, S)."""
        if self.attention is None:
            return top, None
        context, weights = self.attention(top, mem.keys, mem.memory, mem.mask)
        return torch.tanh(self.combine(torch.cat([top, context], dim=-1))), weights

    def _layer_step(self, x: Tensor, states: list[State], masks: list[Tensor | None]) -> tuple[Tensor, list[State]]:
        new_states: list[State] = []
        layer_masks = iter(masks)

        def run(layer: int, inp: Tensor) -> Tensor:
            h, s = self.cells[layer].forward_step(inp, states[layer])
            new_states.append(s)
            return h

        def dropout(h: Tensor) -> Tensor:
            return self.dropout(h, next(layer_masks))

        return residual_stack(x, len(self.cells), run, dropout, self.residual), new_states

    def _sequence_masks(self, batch: int, like: Tensor) -> _Masks:
        """Variational dropout's masks for one batch of sequences decoded step by step
        (all None otherwise): embedding, each layer's output, the output layer."""
        layers = [self.dropout.sample_mask(batch, self.hidden_size, like) for _ in self.cells]
        return _Masks(
            self.embedding_dropout.sample_mask(batch, self.embedding_size, like),
            layers,
            self.output_dropout.sample_mask(batch, self.hidden_size, like),
        )

    def step(
        self, prev: Tensor, flat: tuple[Tensor, ...], mem: Memory, rows: Tensor | None = None
    ) -> tuple[Tensor, tuple[Tensor, ...], Tensor | None]:
        """One step: prev tokens (B,) → logits (B, V), new flat state, attention (B, S).

        ``rows`` (R,): compute logits only for these rows, (R, V) (search skips finished hypotheses).
        ``mem`` may have B = N / K rows: rows b·K … b·K + K − 1 of ``prev`` then share sentence b's
        memory (beam search does not copy the memory K times).
        """
        return self._step(prev, flat, mem, _Masks(None, [None] * len(self.cells), None), rows)

    def _step(
        self, prev: Tensor, flat: tuple[Tensor, ...], mem: Memory, masks: _Masks, rows: Tensor | None = None
    ) -> tuple[Tensor, tuple[Tensor, ...], Tensor | None]:
        states, feed = self._split(flat)
        x = self.embedding_dropout(self.embed(prev), masks.embedding)  # (B, E)
        if feed is not None:
            x = torch.cat([x, feed], dim=-1)
        top, states = self._layer_step(x, states, masks.layers)
        n, b = top.size(0), mem.memory.size(0)  # memory may hold one row per sentence for its n / b beams
        att, weights = self._attend(top.view(b, n // b, -1), mem)  # (B, K, H): a sentence's beams as its queries
        att = att.reshape(n, -1)  # (N, H)
        out = self.output_dropout(att, masks.output)
        logits = self.output(out if rows is None else out.index_select(0, rows))
        feed_out = (att,) if self.input_feeding else ()
        return logits, flatten_states(states) + feed_out, (weights.reshape(n, -1) if weights is not None else None)

    def forward(self, tgt_in: Tensor, flat: tuple[Tensor, ...], mem: Memory, keep: Tensor | None = None) -> Tensor:
        """Teacher forcing: tgt_in (B, T) → logits (B, T, V); with ``keep`` (B, T) bool, only the
        logits at its True positions, (N, V) in row-major order (training skips padding: the output
        layer and the loss are a third of a step)."""
        if self.input_feeding or not self.fused:
            masks = self._sequence_masks(tgt_in.size(0), mem.memory)  # one per sequence, reused at every step
            logits = []
            with deferred_weight_grads():  # plugin cells: a weight's gradient summed once over the T steps
                for t in range(tgt_in.size(1)):
                    step_logits, flat, _ = self._step(tgt_in[:, t], flat, mem, masks)
                    logits.append(step_logits)
            stacked = torch.stack(logits, dim=1)
            return stacked if keep is None else stacked[keep]
        states, _ = self._split(flat)
        x = self.embedding_dropout(self.embed(tgt_in))  # (B, T, E)

        def run(layer: int, inp: Tensor) -> Tensor:
            return self.cells[layer].forward_sequence(inp, states[layer])[0]

        x = residual_stack(x, len(self.cells), run, self.dropout, self.residual)  # (B, T, H)
        att, _ = self._attend(x, mem)
        out = self.output_dropout(att)  # dropout before selecting: a variational mask is per sequence
        return self.output(out if keep is None else out[keep])


def _bridge(probe: list[State], memory_size: int) -> nn.ModuleList:
    """Per layer, per state tensor: a projection of the source summary (D) to the
    tensor's size, or Identity for a tensor that is not (B, ·)-shaped."""
    return nn.ModuleList(
        nn.ModuleList(nn.Linear(memory_size, t.size(1)) if t.dim() == 2 else nn.Identity() for t in s) for s in probe
    )
