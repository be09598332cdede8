"""Cells that train in parallel over time: minGRU, minLSTM, SRU and SSRU.

In each of them every matrix product depends on the input only, so the sequence
path (``forward_sequence``) computes all of them for the whole sequence as one
matrix product over B·T positions and leaves only an element-wise recurrence:

- minGRU, minLSTM, SSRU: a linear recurrence h_t = a_t ⊙ h_{t−1} + b_t whose a and
  b depend on x only (``scan.linear_recurrence``);
- SRU: a non-linear element-wise recurrence (its forget gate reads v_f ⊙ c_{t−1}),
  one sigmoid and two multiply-adds per step (``scan.sru_recurrence``); its reset
  gate and highway output are computed after the loop, for all steps at once.

The step path ``forward`` is the reference, written straight from each paper's
equations; tests/test_parallel_cells.py checks that both paths agree, values and
gradients, over random lengths and sizes. In the decoder the sequence path runs
only when input feeding is off: with input feeding a step's input depends on the
previous step's attention output, and the decoder steps one token at a time.

Every cell keeps its input projection in one ``nn.Linear`` named ``proj``, so
``--quantize int8`` makes it int8 through ``quantize_int8`` (the toolkit's opt-in
for non-fused cells); the element-wise recurrence stays fp32.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from seq2seq_rnn.cells.base import CellOptions, RecurrentCell, State
from seq2seq_rnn.cells.scan import alive_mask, final_state, linear_recurrence, sru_recurrence

__all__ = ["MinGRUCell", "MinLSTMCell", "SRUCell", "SSRUCell"]


def g(x: Tensor) -> Tensor:
    """Feng et al.'s positive activation: g(x) = x + ½ for x ≥ 0, σ(x) otherwise (continuous at 0).

    Written as relu(x) + σ(−relu(−x)) (the same values): its backward is two thresholds and
    a sigmoid, half the time of ``torch.where`` forward and backward on this CPU."""
    return torch.relu(x) + torch.sigmoid(-torch.relu(-x))


class MinOptions(CellOptions):
    candidate: Literal["g", "linear"] = Field(
        default="g",
        description="h̃ = g(W_h x) (the paper's parallel, log-space mode) or h̃ = W_h x (its sequential mode)",
    )


class _ParallelCell(RecurrentCell):
    """Shared plumbing: one (B, H) state tensor, the input projection ``proj``, int8 opt-in."""

    proj: nn.Module
    is_int8: bool = False

    def initial_state(self, batch_size: int, device: torch.device | str, dtype: torch.dtype) -> State:
        return (torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype),)

    def quantize_int8(self) -> RecurrentCell:
        """A copy with ``proj`` as a dynamically quantized int8 Linear (the recurrence stays fp32)."""
        from torch.ao.quantization import quantize_dynamic

        q = copy.deepcopy(self).cpu().eval()
        if not q.is_int8:
            with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", UserWarning)
                q.proj = quantize_dynamic(nn.Sequential(q.proj), {nn.Linear}, dtype=torch.qint8)[0]
            q.is_int8 = True
        return q

    def _recurrence(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, I) or (B, I) → a, b of h_t = a ⊙ h_{t−1} + b, same leading shape."""
        raise NotImplementedError

    def _output(self, h: Tensor) -> Tensor:
        """The cell's output from its state (identity unless overridden)."""
        return h

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        a, b = self._recurrence(x)
        h = a * state[0] + b
        return self._output(h), (h,)

    def forward_sequence(self, x: Tensor, state: State, lengths: Tensor | None = None) -> tuple[Tensor, State]:
        # x (B, T, I) → outputs (B, T, H): all products for every step at once, then the loop
        a, b = self._recurrence(x)  # (B, T, H) each
        states = linear_recurrence(a, b, state[0])
        out = self._output(states)
        alive = alive_mask(lengths, x.size(1), out)
        if alive is not None:
            out = out * alive
        return out, (final_state(states, state[0], lengths),)


class MinGRUCell(_ParallelCell):
    """minGRU (Feng et al., 2024, "Were RNNs All We Needed?", arXiv 2410.01201, §3.1):

        z_t = σ(Linear_z(x_t)),  h̃_t = g(Linear_h(x_t)),  h_t = (1 − z_t) ⊙ h_{t−1} + z_t ⊙ h̃_t

    The gate and the candidate depend on x only (no W_h h_{t−1}, no reset gate), so the
    recurrence is linear in h and the whole sequence reduces to one scan. ``candidate: g``
    (default) is the paper's parallel mode, g keeping h̃ > 0 as its log-space scan needs;
    ``candidate: linear`` its sequential mode h̃ = Linear_h(x). This toolkit's scan is not
    in log space (``scan.py`` says why), so both are exact here.

    Initialisation: the paper uses PyTorch's default Linear initialisation; here the model's
    U(−a, a) (``init.uniform``) applies, and the update gate's bias starts at −``init.forget_bias``
    so that the retention 1 − z_t starts near σ(forget_bias), as an LSTM's forget gate would
    (``init.forget_bias: 0`` gives the paper's zero bias). State (h,).
    """

    options_model: ClassVar[type[CellOptions]] = MinOptions

    def __init__(self, input_size: int, hidden_size: int, **options: object) -> None:
        opts = MinOptions.model_validate(options)
        super().__init__(input_size, hidden_size)
        self.candidate = opts.candidate
        self.proj = nn.Linear(input_size, 2 * hidden_size)  # [z | h̃]

    def _recurrence(self, x: Tensor) -> tuple[Tensor, Tensor]:
        k_z, k_h = self.proj(x).chunk(2, dim=-1)
        z = torch.sigmoid(k_z)
        h_tilde = g(k_h) if self.candidate == "g" else k_h
        return 1 - z, z * h_tilde

    def reset_parameters_for(self, recurrent: str, forget_bias: float) -> None:
        with torch.no_grad():
            self.proj.bias[: self.hidden_size].fill_(-forget_bias)


class MinLSTMCell(_ParallelCell):
    """minLSTM (Feng et al., 2024, arXiv 2410.01201, §3.2):

        f_t = σ(Linear_f(x_t)),  i_t = σ(Linear_i(x_t)),  h̃_t = g(Linear_h(x_t))
        f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t)       (time-independent scale)
        h_t = f'_t ⊙ h_{t−1} + i'_t ⊙ h̃_t

    No output gate and no cell state apart from h; gates depend on x only, so the
    sequence is one linear scan. ``candidate`` as for minGRU. Initialisation: the model's
    U(−a, a), and the forget gate's bias at ``init.forget_bias`` (the paper: PyTorch's
    defaults). State (h,).
    """

    options_model: ClassVar[type[CellOptions]] = MinOptions

    def __init__(self, input_size: int, hidden_size: int, **options: object) -> None:
        opts = MinOptions.model_validate(options)
        super().__init__(input_size, hidden_size)
        self.candidate = opts.candidate
        self.proj = nn.Linear(input_size, 3 * hidden_size)  # [f | i | h̃]

    def _recurrence(self, x: Tensor) -> tuple[Tensor, Tensor]:
        k_f, k_i, k_h = self.proj(x).chunk(3, dim=-1)
        f, i = torch.sigmoid(k_f), torch.sigmoid(k_i)
        total = f + i  # > 0: both gates are sigmoids
        h_tilde = g(k_h) if self.candidate == "g" else k_h
        return f / total, i / total * h_tilde

    def reset_parameters_for(self, recurrent: str, forget_bias: float) -> None:
        with torch.no_grad():
            self.proj.bias[: self.hidden_size].fill_(forget_bias)


class SSRUCell(_ParallelCell):
    """SSRU, the simpler simple recurrent unit (Kim et al., 2019, "From Research to Production
    and Back: Ludicrously Fast Neural Machine Translation", WNGT, §3.1; the decoder of Marian's
    fast CPU student models):

        f_t = σ(W_f x_t + b_f),  c_t = f_t ⊙ c_{t−1} + (1 − f_t) ⊙ W x_t,  h_t = ReLU(c_t)

    SRU without the reset gate, the highway connection and the v ⊙ c_{t−1} peepholes, so
    the recurrence is linear in c and one scan runs the whole sequence. W has no bias, as
    in the paper. Initialisation: the model's U(−a, a) and b_f = ``init.forget_bias`` (the
    paper does not prescribe one). State (c,); the output is ReLU(c).
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.proj = nn.Linear(input_size, 2 * hidden_size, bias=False)  # [W_f | W]
        self.forget_bias = nn.Parameter(torch.zeros(hidden_size))

    def _recurrence(self, x: Tensor) -> tuple[Tensor, Tensor]:
        k_f, wx = self.proj(x).chunk(2, dim=-1)
        f = torch.sigmoid(k_f + self.forget_bias)
        return f, (1 - f) * wx

    def _output(self, h: Tensor) -> Tensor:
        return torch.relu(h)

    def reset_parameters_for(self, recurrent: str, forget_bias: float) -> None:
        with torch.no_grad():
            self.forget_bias.fill_(forget_bias)


class SRUOptions(CellOptions):
    highway_bias: float = Field(default=0.0, ge=-20.0, le=20.0, description="initial b_r of the reset gate")
    rescale: bool = Field(default=True, description="scale the highway input by α = √(1 + 2·exp(highway_bias))")


class SRUCell(_ParallelCell):
    """SRU, the simple recurrent unit (Lei et al., 2018, "Simple Recurrent Units for Highly
    Parallelizable Recurrence", EMNLP, arXiv 1709.02755, eqs. 3–6, §3.2):

        f_t = σ(W_f x_t + v_f ⊙ c_{t−1} + b_f)
        c_t = f_t ⊙ c_{t−1} + (1 − f_t) ⊙ (W x_t)
        r_t = σ(W_r x_t + v_r ⊙ c_{t−1} + b_r)
        h_t = r_t ⊙ c_t + (1 − r_t) ⊙ α·x'_t

    with x' = x when the input size equals H and x' = W' x otherwise (the paper's projection
    for the highway term). W, W_f, W_r (and W') are one matrix product over the whole sequence;
    the loop is element-wise. Initialisation (§3.2): every weight matrix zero-mean with variance
    1/d (d = input size), the reset bias b_r = ``highway_bias`` and, with ``rescale``, the
    highway scale α = √(1 + 2·exp(b_r)) (√3 for b_r = 0) that keeps the output variance at init;
    b_f = ``init.forget_bias`` (the paper: 0); v_f, v_r keep the model's U(−a, a). State (c,).
    """

    options_model: ClassVar[type[CellOptions]] = SRUOptions

    def __init__(self, input_size: int, hidden_size: int, **options: object) -> None:
        opts = SRUOptions.model_validate(options)
        super().__init__(input_size, hidden_size)
        self.highway_bias, self.rescale = opts.highway_bias, opts.rescale
        self.alpha = math.sqrt(1 + 2 * math.exp(opts.highway_bias)) if opts.rescale else 1.0
        self.project_highway = input_size != hidden_size
        blocks = 4 if self.project_highway else 3
        self.proj = nn.Linear(input_size, blocks * hidden_size, bias=False)  # [W | W_f | W_r (| W')]
        self.bias = nn.Parameter(torch.zeros(2 * hidden_size))  # [b_f | b_r]
        self.v = nn.Parameter(torch.zeros(2 * hidden_size))  # [v_f | v_r]

    def _inputs(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """x (…, I) → W x, W_f x + b_f, W_r x + b_r, α·x' (each (…, H))."""
        parts = self.proj(x).chunk(4 if self.project_highway else 3, dim=-1)
        b_f, b_r = self.bias.chunk(2)
        highway = parts[3] if self.project_highway else x
        return parts[0], parts[1] + b_f, parts[2] + b_r, highway * self.alpha

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        u, uf, ur, highway = self._inputs(x)
        c_prev = state[0]
        v_f, v_r = self.v.chunk(2)
        f = torch.sigmoid(uf + v_f * c_prev)
        c = f * c_prev + (1 - f) * u
        r = torch.sigmoid(ur + v_r * c_prev)
        h = r * c + (1 - r) * highway
        return h, (c,)

    def forward_sequence(self, x: Tensor, state: State, lengths: Tensor | None = None) -> tuple[Tensor, State]:
        u, uf, ur, highway = self._inputs(x)  # (B, T, H) each, one matrix product
        v_f, v_r = self.v.chunk(2)
        c = sru_recurrence(u, uf, v_f, state[0])  # (B, T, H): c_t
        c_prev = torch.cat([state[0].unsqueeze(1), c[:, :-1]], dim=1)  # c_{t−1}
        r = torch.sigmoid(torch.addcmul(ur, v_r, c_prev))
        h = torch.addcmul(highway, r, c - highway)  # r ⊙ c + (1 − r) ⊙ α·x'; unlike lerp, promotes under autocast
        alive = alive_mask(lengths, x.size(1), h)
        if alive is not None:
            h = h * alive
        return h, (final_state(c, state[0], lengths),)

    def reset_parameters_for(self, recurrent: str, forget_bias: float) -> None:
        bound = math.sqrt(3.0 / self.input_size)  # U(−b, b) has variance b²/3 = 1/d
        with torch.no_grad():
            nn.init.uniform_(self.proj.weight, -bound, bound)
            self.bias[: self.hidden_size].fill_(forget_bias)
            self.bias[self.hidden_size :].fill_(self.highway_bias)
