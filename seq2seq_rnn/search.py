"""Greedy and batched beam search over any model with ``encode`` and ``decode_step``.

The decoder state is a flat tuple of (N, ·) tensors, so reordering beams is one
``index_select`` per tensor, whatever cell the model uses. Beam search keeps
B·K rows; a finished hypothesis keeps its slot and score (it may only extend
with EOS at no cost), and the length penalty (GNMT: ((5 + len) / 6) ** alpha)
ranks the finished hypotheses at the end.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
from torch import Tensor


class Decodable(Protocol):
    def encode(self, src: Tensor, lengths: Tensor) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]: ...

    def decode_step(
        self, prev: Tensor, state: tuple[Tensor, ...], memory: tuple[Tensor, ...]
    ) -> tuple[Tensor, tuple[Tensor, ...], Tensor | None]: ...


class Hypothesis(NamedTuple):
    tokens: list[int]  # without BOS/EOS
    score: float  # length-normalised log-probability
    attention: Tensor | None = None  # (T, S) when requested


def max_lengths(lengths: Tensor, ratio: float, offset: int) -> Tensor:
    """Per-sentence cap on output length (B,), EOS included."""
    return (lengths.float() * ratio).long() + offset


def _repeat(tensors: tuple[Tensor, ...], k: int) -> tuple[Tensor, ...]:
    repeated = [t.repeat_interleave(k, dim=0) for t in tensors]
    return type(tensors)(*repeated) if hasattr(tensors, "_fields") else tuple(repeated)  # keeps NamedTuples


def _force_eos(logp: Tensor, at_cap: Tensor, eos: int) -> Tensor:
    """Rows that reached their length cap may only emit EOS."""
    eos_col = logp[:, eos].clone()
    logp = logp.masked_fill(at_cap.unsqueeze(1), float("-inf"))
    logp[:, eos] = eos_col
    return logp


def _strip(row: list[int], eos: int) -> list[int]:
    return row[: row.index(eos)] if eos in row else row


def _cut_attention(weights: Tensor | None, tokens: list[int], src_len: int) -> Tensor | None:
    """One hypothesis's weights (T, S) → its own steps (EOS included) over its real source: (≤ len + 1, S_b)."""
    if weights is None:
        return None
    return weights[: len(tokens) + 1, :src_len].float().cpu()


@torch.no_grad()
def greedy_search(
    model: Decodable, src: Tensor, lengths: Tensor, caps: Tensor, bos: int, eos: int, attention: bool = False
) -> list[Hypothesis]:
    """Argmax decoding of src (B, S); caps (B,) bound each output's length.

    ``attention=True`` fills each ``Hypothesis.attention`` (T, S) for attentional models.
    """
    memory, state = model.encode(src, lengths)
    batch = src.size(0)
    prev = torch.full((batch,), bos, dtype=torch.long, device=src.device)
    done = torch.zeros(batch, dtype=torch.bool, device=src.device)
    score = torch.zeros(batch, device=src.device)
    caps = caps.to(src.device)
    out, weights = [], []
    for t in range(int(caps.max())):
        logits, state, attn = model.decode_step(prev, state, memory)
        if attention and attn is not None:
            weights.append(attn)  # (B, S)
        logp = _force_eos(torch.log_softmax(logits.float(), dim=-1), t + 1 >= caps, eos)
        best, prev = logp.max(dim=-1)
        prev = prev.masked_fill(done, eos)
        score += best.masked_fill(done, 0.0)
        out.append(prev)
        done |= prev == eos
        if bool(done.all()):
            break
    rows = torch.stack(out, dim=1).tolist()  # (B, T)
    history = torch.stack(weights, dim=1) if weights else None  # (B, T, S)
    hyps = [Hypothesis(_strip(r, eos), s) for r, s in zip(rows, score.tolist(), strict=True)]
    if history is None:
        return hyps
    src_lens = lengths.tolist()
    return [h._replace(attention=_cut_attention(history[b], h.tokens, src_lens[b])) for b, h in enumerate(hyps)]


def length_penalty(length: Tensor, alpha: float) -> Tensor:
    return ((5.0 + length.float()) / 6.0) ** alpha


@torch.no_grad()
def beam_search(
    model: Decodable,
    src: Tensor,
    lengths: Tensor,
    caps: Tensor,
    bos: int,
    eos: int,
    beam_size: int,
    alpha: float = 1.0,
    nbest: int = 1,
    attention: bool = False,
) -> list[list[Hypothesis]]:
    """Batched beam search of src (B, S) → the ``nbest`` best hypotheses per sentence.

    ``attention=True`` fills each ``Hypothesis.attention`` (T, S), reordered with the beams like the tokens.
    """
    batch, k, device = src.size(0), beam_size, src.device
    memory, state = model.encode(src, lengths)
    memory, state = _repeat(memory, k), _repeat(state, k)
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # only one live beam at the start
    tokens = torch.full((batch * k, 1), bos, dtype=torch.long, device=device)
    finished = torch.zeros(batch * k, dtype=torch.bool, device=device)
    hyp_len = torch.zeros(batch * k, dtype=torch.long, device=device)
    caps = caps.to(device).repeat_interleave(k)
    offsets = (torch.arange(batch, device=device) * k).unsqueeze(1)  # (B, 1)
    history: Tensor | None = None  # (B·K, t, S) attention of each live hypothesis, when requested
    for t in range(int(caps.max())):
        logits, state, attn = model.decode_step(tokens[:, -1], state, memory)
        logp = _force_eos(torch.log_softmax(logits.float(), dim=-1), t + 1 >= caps, eos)  # (B·K, V)
        logp[finished] = float("-inf")
        logp[finished, eos] = 0.0
        vocab = logp.size(1)
        candidates = (scores.view(-1, 1) + logp).view(batch, k * vocab)
        scores, index = candidates.topk(k, dim=1)  # (B, K)
        rows = (offsets + index // vocab).view(-1)  # (B·K,) which beam each came from
        next_tok = (index % vocab).view(-1)
        state = tuple(s.index_select(0, rows) for s in state)
        was_finished = finished.index_select(0, rows)
        hyp_len = hyp_len.index_select(0, rows) + (~was_finished).long()
        finished = was_finished | (next_tok == eos)
        tokens = torch.cat([tokens.index_select(0, rows), next_tok.unsqueeze(1)], dim=1)
        if attention and attn is not None:
            step = attn.index_select(0, rows).unsqueeze(1)  # (B·K, 1, S)
            history = step if history is None else torch.cat([history.index_select(0, rows), step], dim=1)
        if bool(finished.all()):
            break
    final = (scores.view(-1) / length_penalty(hyp_len, alpha)).view(batch, k)
    order = final.argsort(dim=1, descending=True)[:, :nbest]
    token_rows = tokens[:, 1:].tolist()
    src_lens = lengths.tolist()
    out = []
    for b in range(batch):
        hyps = []
        for j in order[b].tolist():
            row = _strip(token_rows[b * k + j], eos)
            weights = _cut_attention(history[b * k + j], row, src_lens[b]) if history is not None else None
            hyps.append(Hypothesis(row, float(final[b, j]), weights))
        out.append(hyps)
    return out
