"""The time loop of the parallel cells: a linear recurrence h_t = a_t ⊙ h_{t−1} + b_t,
and the padding rules every sequence path shares.

Everything a parallel cell computes from x alone (the input projections, the gates
of minGRU/minLSTM/SSRU) runs before this loop as one matrix product over all B·T
positions; what is left per step is one fused multiply-add on (B, H) tensors.

Why a sequential loop and not a parallel scan: measured on this project's 2-core
CPU (B=64, H=512, one thread, forward+backward; ``tools/bench.py --only cells``,
``scan_*`` figures; three runs on a shared machine, docs/results.md) the loop of
``addcmul`` beat a Hillis–Steele associative scan (log₂ T passes over the whole
(B, T, H) tensor) by 2.5–7× at T=30 and 10–17× at T=100, and the log-space scan of
Heinsen (2023) used by Feng et al. (two ``logcumsumexp`` for signed values) by 13–39×
and 42–69×: a (B, H) slice stays in cache, while each scan
pass streams the full tensor through memory, and the CPU has too few cores for the
scan's extra work to pay. The loop is also exact (no log/exp round trip) and needs
no positivity of b or h₀. A GPU would favour the scan; it is not used here.

Padding: right-padded positions (t ≥ length) are computed like real ones and then
ignored. They come after every real token, so they can change neither a real
output nor the state after the last real token; outputs there are zeroed and the
final state is gathered at ``length − 1``. Their gradient is zero, as on the
step path that freezes the state with ``torch.where``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def linear_recurrence(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """a, b (B, T, H), h0 (B, H) → h (B, T, H) with h_t = a_t ⊙ h_{t−1} + b_t."""
    if torch.jit.is_tracing():  # export: a Python loop would trace to one fixed length
        return _scripted("linear")(a, b, h0)
    h, out = h0, []
    for a_t, b_t in zip(a.unbind(1), b.unbind(1), strict=True):
        h = torch.addcmul(b_t, a_t, h)
        out.append(h)
    return torch.stack(out, dim=1)


def alive_mask(lengths: Tensor | None, steps: int, like: Tensor) -> Tensor | None:
    """(B, T, 1) mask, 1 at real tokens (t < length), in ``like``'s dtype; None without lengths."""
    if lengths is None:
        return None
    t = torch.arange(steps, device=like.device).unsqueeze(0)  # (1, T)
    return (t < lengths.to(like.device).unsqueeze(1)).unsqueeze(-1).to(like.dtype)


def final_state(states: Tensor, initial: Tensor, lengths: Tensor | None) -> Tensor:
    """states (B, T, H) after each step → the state after each sentence's last real token (B, H)
    (``initial`` for an empty sentence; the last step without lengths)."""
    if lengths is None:
        return states[:, -1] if states.size(1) else initial
    lengths = lengths.to(states.device)
    index = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, states.size(2))  # (B, 1, H)
    last = states.gather(1, index).squeeze(1)
    return torch.where((lengths > 0).unsqueeze(1), last, initial)


# ------------------------------------------------------------ export (tracing)
_SCRIPTED: dict[str, Any] = {}


def _scripted(name: str) -> Any:
    """TorchScript versions of the loops, compiled on first use by an export: a scripted
    function called while tracing stays a loop over the actual length."""
    if name not in _SCRIPTED:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch ≥ 2.10
            _SCRIPTED["linear"] = torch.jit.script(_linear_loop)
            _SCRIPTED["sru"] = torch.jit.script(_sru_loop)
    return _SCRIPTED[name]


def _linear_loop(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    h = h0
    out: list[Tensor] = []
    for t in range(a.size(1)):
        h = torch.addcmul(b[:, t], a[:, t], h)
        out.append(h)
    return torch.stack(out, dim=1)


def _sru_loop(u: Tensor, uf: Tensor, v_f: Tensor, c0: Tensor) -> Tensor:
    c = c0
    out: list[Tensor] = []
    for t in range(u.size(1)):
        u_t = u[:, t]
        f = torch.sigmoid(torch.addcmul(uf[:, t], v_f, c))
        c = torch.addcmul(u_t, f, c - u_t)
        out.append(c)
    return torch.stack(out, dim=1)


def sru_recurrence(u: Tensor, uf: Tensor, v_f: Tensor, c0: Tensor) -> Tensor:
    """SRU's element-wise recurrence: u, uf (B, T, H) hoisted, v_f (H,), c0 (B, H) → c (B, T, H)
    with f_t = σ(uf_t + v_f ⊙ c_{t−1}), c_t = f_t ⊙ c_{t−1} + (1 − f_t) ⊙ u_t = u_t + f_t ⊙ (c_{t−1} − u_t)."""
    if torch.jit.is_tracing():
        return _scripted("sru")(u, uf, v_f, c0)
    c, out = c0, []
    for u_t, uf_t in zip(u.unbind(1), uf.unbind(1), strict=True):
        f = torch.sigmoid(torch.addcmul(uf_t, v_f, c))
        c = torch.addcmul(u_t, f, c - u_t)
        out.append(c)
    return torch.stack(out, dim=1)
