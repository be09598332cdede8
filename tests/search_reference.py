"""The plain searches: every row steps until the whole batch is done.

Kept (with the tests, out of the package) as the reference that the live-work searches in
:mod:`seq2seq_rnn.inference.search`
must equal hypothesis for hypothesis (tests/test_search.py) and as the "before"
of ``tools/bench.py --only decode``. Do not use them to translate: they spend
output-layer work on finished hypotheses and keep finished sentences stepping.
"""

from __future__ import annotations

import torch
from torch import Tensor

from seq2seq_rnn.inference.search import Decodable, Hypothesis, cut_attention, force_eos, length_penalty, repeat, strip


@torch.no_grad()
def plain_greedy_search(
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
        logp = force_eos(torch.log_softmax(logits.float(), dim=-1), t + 1 >= caps, eos)
        best, prev = logp.max(dim=-1)
        prev = prev.masked_fill(done, eos)
        score += best.masked_fill(done, 0.0)
        out.append(prev)
        done |= prev == eos
        if bool(done.all()):
            break
    rows = torch.stack(out, dim=1).tolist()  # (B, T)
    history = torch.stack(weights, dim=1) if weights else None  # (B, T, S)
    hyps = [Hypothesis(strip(r, eos), s) for r, s in zip(rows, score.tolist(), strict=True)]
    if history is None:
        return hyps
    src_lens = lengths.tolist()
    return [h._replace(attention=cut_attention(history[b], h.tokens, src_lens[b])) for b, h in enumerate(hyps)]


@torch.no_grad()
def plain_beam_search(
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
    memory, state = repeat(memory, k), repeat(state, k)
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
        logp = force_eos(torch.log_softmax(logits.float(), dim=-1), t + 1 >= caps, eos)  # (B·K, V)
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
            row = strip(token_rows[b * k + j], eos)
            weights = cut_attention(history[b * k + j], row, src_lens[b]) if history is not None else None
            hyps.append(Hypothesis(row, float(final[b, j]), weights))
        out.append(hyps)
    return out
