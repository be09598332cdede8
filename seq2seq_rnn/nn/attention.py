"""Attention scoring functions (Luong-style placement: after the top decoder layer).

Each module maps a query (B, Tq, H) over a memory (B, S, D) to a context
(B, Tq, D) and weights (B, Tq, S). ``prepare`` precomputes whatever depends on
the memory only (projected keys), once per source batch; decoding reuses it.
"No attention" is ``None`` (see :func:`build_attention`), not a module.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from seq2seq_rnn.components import ATTENTIONS
from seq2seq_rnn.config import NO_ATTENTION, AttentionConfig, dot_attention_mismatch
from seq2seq_rnn.errors import ConfigError


def build_attention(cfg: AttentionConfig, *, query_size: int, memory_size: int) -> Attention | None:
    """The attention named by ``cfg`` over a memory of ``memory_size``; None for 'none'."""
    if cfg.type == NO_ATTENTION:
        return None
    cls = ATTENTIONS.get(cfg.type)
    return cls(query_size=query_size, memory_size=memory_size, hidden_size=cfg.hidden_size)


class Attention(nn.Module):
    """Base class: subclasses implement :meth:`scores`. Constructed with keywords
    ``query_size``, ``memory_size`` and ``hidden_size`` (None unless configured)."""

    def __init__(self, *, query_size: int, memory_size: int, hidden_size: int | None = None) -> None:
        super().__init__()
        self.query_size = query_size
        self.memory_size = memory_size

    def prepare(self, memory: Tensor) -> Tensor:
        """memory (B, S, D) → keys (B, S, K)."""
        return memory

    def scores(self, query: Tensor, keys: Tensor) -> Tensor:
        """query (B, Tq, H), keys (B, S, K) → scores (B, Tq, S)."""
        raise NotImplementedError

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        # mask (B, S): True at real source tokens
        scores = self.scores(query, keys).masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, Tq, S)
        return torch.bmm(weights, memory), weights


class DotAttention(Attention):
    """Luong dot: score = qᵀ k. Needs query and memory of the same size."""

    def __init__(self, *, query_size: int, memory_size: int, hidden_size: int | None = None) -> None:
        super().__init__(query_size=query_size, memory_size=memory_size)
        if mismatch := dot_attention_mismatch(query_size, memory_size):
            raise ConfigError(f"model.attention.type: {mismatch}")

    def scores(self, query: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(query, keys.transpose(1, 2))


class GeneralAttention(Attention):
    """Luong general: score = qᵀ W k, with W k precomputed per source."""

    def __init__(self, *, query_size: int, memory_size: int, hidden_size: int | None = None) -> None:
        super().__init__(query_size=query_size, memory_size=memory_size)
        self.key_proj = nn.Linear(memory_size, query_size, bias=False)

    def prepare(self, memory: Tensor) -> Tensor:
        return self.key_proj(memory)  # (B, S, H)

    def scores(self, query: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(query, keys.transpose(1, 2))


class AdditiveAttention(Attention):
    """Bahdanau (additive): score = vᵀ tanh(W_q q + W_k k)."""

    def __init__(self, *, query_size: int, memory_size: int, hidden_size: int | None = None) -> None:
        super().__init__(query_size=query_size, memory_size=memory_size)
        hidden_size = hidden_size or query_size
        self.key_proj = nn.Linear(memory_size, hidden_size, bias=False)
        self.query_proj = nn.Linear(query_size, hidden_size, bias=True)
        self.energy = nn.Linear(hidden_size, 1, bias=False)

    def prepare(self, memory: Tensor) -> Tensor:
        return self.key_proj(memory)  # (B, S, A)

    def scores(self, query: Tensor, keys: Tensor) -> Tensor:
        q = self.query_proj(query)  # (B, Tq, A)
        if isinstance(self.energy, nn.Linear) and torch.is_grad_enabled():  # training: the fused backward
            return _AdditiveScores.apply(q, keys, self.energy.weight.squeeze(0).to(q.dtype))
        return self.energy(torch.tanh(q.unsqueeze(2) + keys.unsqueeze(1))).squeeze(-1)  # (B, Tq, S)


class _AdditiveScores(torch.autograd.Function):
    """vᵀ tanh(q + k) for q (B, Tq, A), k (B, S, A), v (A,) → (B, Tq, S), with fewer passes.

    The (B, Tq, S, A) tensor is the attention's whole cost in training (~40 M values for a
    Multi30k batch, a fifth of a bf16 step). Autograd made four of them and an outer product
    by matrix multiply (the backward of a Linear with one output); here tanh runs in place, the
    saved tensor is reused in place by the backward, and v's products are matrix-vector products.
    """

    @staticmethod
    def forward(ctx: Any, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        th = (q.unsqueeze(2) + k.unsqueeze(1)).tanh_()  # (B, Tq, S, A)
        ctx.save_for_backward(th, v)
        return th @ v

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        th, v = ctx.saved_tensors  # th is overwritten below: autograd refuses a second backward
        a = th.size(-1)
        grad = grad.to(th.dtype)
        grad_v = th.reshape(-1, a).t().mv(grad.reshape(-1))  # (A,)
        d = th.mul_(th).neg_().add_(1.0).mul_(grad.unsqueeze(-1)).mul_(v)  # ∂/∂(q + k): (1 - tanh²) g v
        return d.sum(2), d.sum(1), grad_v
