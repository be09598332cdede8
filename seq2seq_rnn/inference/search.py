"""Greedy and batched beam search over any model with ``encode`` and ``decode_step``.

The decoder state is a flat tuple of (N, ·) tensors, so reordering beams is one
``index_select`` per tensor, whatever cell the model uses. Beam search keeps
B·K rows; a finished hypothesis keeps its slot and score (it may only extend
with EOS at no cost), and the length penalty (GNMT: ((5 + len) / 6) ** alpha)
ranks the finished hypotheses at the end.

Only live work is done. A sentence whose hypotheses are all finished leaves
the batch: its rows of state, memory, caps and bookkeeping go with one
``index_select`` each, and its n-best list is written out. Within a live
sentence, finished hypotheses get no output-layer work (``decode_step(...,
rows=live)``): their next token is EOS at log-probability 0 whatever the
logits say. The only host sync per step is reading the finished flags, which
the loop needs to decide what leaves. The result equals the plain search
(:mod:`tests.search_reference`) hypothesis for hypothesis.

Shapes: B sentences still in the batch, K beam size, N = B·K rows, S source
length, V target vocabulary, t the step.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, TypeVar

import torch
from torch import Tensor


class Decodable(Protocol):
    def encode(self, src: Tensor, lengths: Tensor) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]: ...

    def decode_step(
        self, prev: Tensor, state: tuple[Tensor, ...], memory: tuple[Tensor, ...], rows: Tensor | None = None
    ) -> tuple[Tensor, tuple[Tensor, ...], Tensor | None]:
        """prev (N,) → logits (N, V) (only for ``rows`` (R,) when given: (R, V)), new state, attention (N, S).

        ``memory`` has N rows, or B = N / K rows when the K beams of each sentence share it."""
        ...


class Hypothesis(NamedTuple):
    tokens: list[int]  # without BOS/EOS
    score: float  # length-normalised log-probability
    attention: Tensor | None = None  # (T, S) when requested


def max_lengths(lengths: Tensor, ratio: float, offset: int) -> Tensor:
    """Per-sentence cap on output length (B,), EOS included."""
    return (lengths.float() * ratio).long() + offset


def length_penalty(length: Tensor, alpha: float) -> Tensor:
    return ((5.0 + length.float()) / 6.0) ** alpha


Tensors = TypeVar("Tensors", bound=tuple)


def _select(tensors: Tensors, index: Tensor) -> Tensors:
    """Rows ``index`` of every tensor; keeps NamedTuples (Memory) their type."""
    picked = [t.index_select(0, index) for t in tensors]
    return type(tensors)(*picked) if hasattr(tensors, "_fields") else tuple(picked)  # type: ignore[return-value]


def repeat(tensors: Tensors, k: int) -> Tensors:
    repeated = [t.repeat_interleave(k, dim=0) for t in tensors]
    return type(tensors)(*repeated) if hasattr(tensors, "_fields") else tuple(repeated)  # type: ignore[return-value]


def force_eos(logp: Tensor, at_cap: Tensor, eos: int) -> Tensor:
    """Rows that reached their length cap may only emit EOS."""
    eos_col = logp[:, eos].clone()
    logp = logp.masked_fill(at_cap.unsqueeze(1), float("-inf"))
    logp[:, eos] = eos_col
    return logp


def strip(row: list[int], eos: int) -> list[int]:
    return row[: row.index(eos)] if eos in row else row


def cut_attention(weights: Tensor | None, tokens: list[int], src_len: int) -> Tensor | None:
    """One hypothesis's weights (T, S) → its own steps (EOS included) over its real source: (≤ len + 1, S_b)."""
    if weights is None:
        return None
    return weights[: len(tokens) + 1, :src_len].float().cpu()


def _index(values: list[int], device: torch.device) -> Tensor:
    return torch.tensor(values, dtype=torch.long).to(device, non_blocking=True)


# ---------------------------------------------------------------- greedy
@torch.no_grad()
def greedy_search(
    model: Decodable, src: Tensor, lengths: Tensor, *, caps: Tensor, bos: int, eos: int, attention: bool = False
) -> list[Hypothesis]:
    """Argmax decoding of src (B, S); caps (B,) bound each output's length (EOS included).

    A sentence leaves the batch at its EOS or its cap. ``attention=True`` fills
    each ``Hypothesis.attention`` (T, S) for attentional models.
    """
    device = src.device
    memory, state = model.encode(src, lengths)
    alive = list(range(src.size(0)))  # original index of each row still decoding
    cap_of = caps.tolist()
    src_lens = lengths.tolist()
    prev = torch.full((len(alive),), bos, dtype=torch.long, device=device)
    score = torch.zeros(len(alive), device=device)
    tokens = prev.new_empty(len(alive), 0)  # (B, t)
    history: Tensor | None = None  # (B, t, S)
    out: list[Hypothesis | None] = [None] * len(alive)
    t = 0
    while alive:
        logits, state, attn = model.decode_step(prev, state, memory)
        logp = torch.log_softmax(logits.float(), dim=-1)
        at_cap = [t + 1 >= cap_of[i] for i in alive]
        if any(at_cap):
            logp = force_eos(logp, torch.tensor(at_cap, device=device), eos)
        best, prev = logp.max(dim=-1)
        score += best
        tokens = torch.cat([tokens, prev.unsqueeze(1)], dim=1)
        if attention and attn is not None:
            history = attn.unsqueeze(1) if history is None else torch.cat([history, attn.unsqueeze(1)], dim=1)
        ended = (prev == eos).tolist()  # the step's one host sync
        t += 1
        if not any(ended) and not any(at_cap):
            continue
        leave = [row for row in range(len(alive)) if ended[row] or at_cap[row]]
        index = _index(leave, device)
        left_tokens, left_scores = tokens.index_select(0, index).tolist(), score.index_select(0, index).tolist()
        for row, toks, sc in zip(leave, left_tokens, left_scores, strict=True):
            toks = strip(toks, eos)
            weights = cut_attention(history[row], toks, src_lens[alive[row]]) if history is not None else None
            out[alive[row]] = Hypothesis(toks, sc, weights)
        stay = [row for row in range(len(alive)) if not (ended[row] or at_cap[row])]
        if stay:
            keep = _index(stay, device)
            alive = [alive[row] for row in stay]
            state, memory = _select(state, keep), _select(memory, keep)
            prev, score, tokens = prev.index_select(0, keep), score.index_select(0, keep), tokens.index_select(0, keep)
            history = history.index_select(0, keep) if history is not None else None
        else:
            alive = []
    return out  # type: ignore[return-value]


# ---------------------------------------------------------------- beam
class _Beams:
    """The bookkeeping of the sentences still in the batch; every row-indexed tensor has N = B·K rows."""

    def __init__(self, batch: int, k: int, caps: list[int], device: torch.device, bos: int) -> None:
        self.k = k
        self.alive = list(range(batch))  # original sentence index of each sentence still in the batch
        self.caps = caps  # per original sentence, on the host
        self.scores = torch.full((batch, k), float("-inf"), device=device)  # (B, K)
        self.scores[:, 0] = 0.0  # only one live beam at the start
        self.tokens = torch.full((batch * k, 1), bos, dtype=torch.long, device=device)  # (N, t + 1)
        self.finished = torch.zeros(batch * k, dtype=torch.bool, device=device)  # (N,)
        self.hyp_len = torch.zeros(batch * k, dtype=torch.long, device=device)  # (N,)
        self.history: Tensor | None = None  # (N, t, S) attention, when requested

    def select(self, sentences: list[int], device: torch.device) -> tuple[Tensor, Tensor]:
        """Keep only the given sentences (positions in ``alive``); returns their indices (B',) and rows (N',)."""
        rows = _index([s * self.k + j for s in sentences for j in range(self.k)], device)
        kept = _index(sentences, device)
        self.alive = [self.alive[s] for s in sentences]
        self.scores = self.scores.index_select(0, kept)
        self.tokens = self.tokens.index_select(0, rows)
        self.finished = self.finished.index_select(0, rows)
        self.hyp_len = self.hyp_len.index_select(0, rows)
        self.history = self.history.index_select(0, rows) if self.history is not None else None
        return kept, rows


def topk_rows(x: Tensor, k: int, block: int = 128) -> tuple[Tensor, Tensor]:
    """``x.topk(k, dim=1)`` for x (R, V) with a large V, about twice as fast on the CPU.

    A row's k best values lie in the k blocks (of ``block`` columns) with the
    highest maxima, so one pass of block maxima and a topk over k·block values
    (plus the V mod block columns left over) replace the topk over V, which torch
    runs as a slow partial sort per row."""
    rows, vocab = x.shape
    if x.device.type != "cpu" or vocab < 4 * block or k > vocab // block:  # GPUs have a fast top-k
        return x.topk(k, dim=1)
    whole = vocab - vocab % block
    blocks = x[:, :whole].view(rows, whole // block, block)  # (R, V / block, block), no copy
    best_blocks = blocks.amax(dim=2).topk(k, dim=1).indices  # (R, k)
    inside = blocks.gather(1, best_blocks.unsqueeze(2).expand(rows, k, block)).view(rows, k * block)
    if whole < vocab:
        inside = torch.cat([inside, x[:, whole:]], dim=1)  # (R, k·block + V mod block)
    values, index = inside.topk(k, dim=1)  # (R, k)
    in_block = best_blocks.gather(1, (index // block).clamp(max=k - 1)) * block + index % block
    return values, torch.where(index < k * block, in_block, index - k * block + whole)


def _row_candidates(logits: Tensor, beams: _Beams, live: Tensor | None, t: int, eos: int) -> tuple[Tensor, Tensor]:
    """Each row's best next tokens: log-probabilities and ids, both (N, K').

    The best K of a sentence's K·V continuations are among its rows' own best K, so
    only those are ranked (K' = min(K, V)). Live rows take theirs from ``logits`` (R, V);
    a finished row's only continuation is EOS at 0; a row at its cap may only emit EOS."""
    logp = torch.log_softmax(logits.float(), dim=-1)  # (R, V)
    width = min(beams.k, logp.size(1))
    top_lp, top_tok = topk_rows(logp, width)  # (R, K')
    capped = [s for s, i in enumerate(beams.alive) if t + 1 >= beams.caps[i]]
    if capped:
        at_cap = torch.zeros(len(beams.alive), dtype=torch.bool)
        at_cap[capped] = True
        at_cap = at_cap.to(logp.device).repeat_interleave(beams.k)  # (N,)
        if live is not None:
            at_cap = at_cap.index_select(0, live)
        only_eos = torch.full_like(top_lp, float("-inf"))
        only_eos[:, 0] = logp[:, eos]
        top_lp = torch.where(at_cap.unsqueeze(1), only_eos, top_lp)
        top_tok = top_tok.masked_fill(at_cap.unsqueeze(1), eos)
    if live is None:
        return top_lp, top_tok
    rows = beams.finished.size(0)
    cand_lp = top_lp.new_full((rows, width), float("-inf"))
    cand_lp[:, 0] = torch.where(beams.finished, 0.0, float("-inf"))
    cand_tok = top_tok.new_full((rows, width), eos)
    return cand_lp.index_copy_(0, live, top_lp), cand_tok.index_copy_(0, live, top_tok)


def _nbest(beams: _Beams, sentence: int, src_len: int, alpha: float, nbest: int, eos: int) -> list[Hypothesis]:
    """The finished sentence at position ``sentence`` → its ``nbest`` hypotheses, best first."""
    k = beams.k
    rows = slice(sentence * k, (sentence + 1) * k)
    final = beams.scores[sentence] / length_penalty(beams.hyp_len[rows], alpha)  # (K,)
    order = final.argsort(descending=True)[:nbest].tolist()
    token_rows = beams.tokens[rows, 1:].tolist()
    history = beams.history[rows] if beams.history is not None else None
    hyps = []
    for j in order:
        toks = strip(token_rows[j], eos)
        weights = cut_attention(history[j], toks, src_len) if history is not None else None
        hyps.append(Hypothesis(toks, float(final[j]), weights))
    return hyps


@torch.no_grad()
def beam_search(
    model: Decodable,
    src: Tensor,
    lengths: Tensor,
    *,
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
    state = repeat(state, k)  # (N, ·); memory and its projected keys stay one row per sentence (B, S, ·)
    beams = _Beams(batch, k, caps.tolist(), device, bos)
    src_lens = lengths.tolist()
    out: list[list[Hypothesis]] = [[] for _ in range(batch)]
    live: Tensor | None = None  # rows (R,) that still need logits; None = all
    t = 0
    while beams.alive:
        n_sent = len(beams.alive)
        logits, state, attn = model.decode_step(beams.tokens[:, -1], state, memory, rows=live)
        cand_lp, cand_tok = _row_candidates(logits, beams, live, t, eos)  # (N, K')
        width = cand_lp.size(1)
        candidates = (beams.scores.view(-1, 1) + cand_lp).view(n_sent, k * width)
        beams.scores, index = candidates.topk(k, dim=1)  # (B, K)
        offsets = (torch.arange(n_sent, device=device) * k).unsqueeze(1)  # (B, 1)
        rows = (offsets + index // width).view(-1)  # (N,) which beam each came from
        next_tok = cand_tok.view(n_sent, k * width).gather(1, index).view(-1)
        state = _select(state, rows)
        was_finished = beams.finished.index_select(0, rows)
        beams.hyp_len = beams.hyp_len.index_select(0, rows) + (~was_finished).long()
        beams.finished = was_finished | (next_tok == eos)
        beams.tokens = torch.cat([beams.tokens.index_select(0, rows), next_tok.unsqueeze(1)], dim=1)
        if attention and attn is not None:
            step = attn.index_select(0, rows).unsqueeze(1)  # (N, 1, S)
            beams.history = step if beams.history is None else torch.cat([beams.history.index_select(0, rows), step], 1)
        t += 1
        finished = beams.finished.tolist()  # the step's one host sync
        stay = []
        for s in range(n_sent):
            if all(finished[s * k : (s + 1) * k]):
                i = beams.alive[s]
                out[i] = _nbest(beams, s, src_lens[i], alpha, nbest, eos)
            else:
                stay.append(s)
        if len(stay) < n_sent:
            kept, keep = beams.select(stay, device)
            state, memory = _select(state, keep), _select(memory, kept)
            finished = [finished[s * k + j] for s in stay for j in range(k)]
        live = None if not any(finished) else _index([r for r, f in enumerate(finished) if not f], device)
    return out
