"""Layer-normalised LSTM (Ba, Kiros & Hinton, 2016, "Layer Normalization", §A.2).

With gates in PyTorch's order (i, f, g, o), x (B, I), h and c (B, H)::

    gates = LN_x(W_x x) + LN_h(W_h h) + b                  (B, 4H)
    c'    = σ(f) ⊙ c + σ(i) ⊙ tanh(g)
    h'    = σ(o) ⊙ tanh(LN_c(c'))

Each LN normalises over its last dimension (4H for the projections, H for the
cell state). The projections' LNs have a gain and no bias of their own (``b``
is the bias); LN_c has both. ``affine=False`` drops every gain and LN bias.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from seq2seq_rnn.cells.base import CellOptions, RecurrentCell, State, orthogonal_blocks_
from torch import Tensor, nn
from torch.nn import functional as F


class LayerNormLSTMOptions(CellOptions):
    """The recipe's ``cell_options`` for ``layernorm_lstm``, checked when the recipe
    is loaded: ``model.encoder.cell_options.eps: Input should be greater than 0``."""

    eps: float = Field(default=1e-5, gt=0.0, description="added to the variance in every LayerNorm")
    affine: bool = Field(default=True, description="LayerNorms learn a gain (and LN_c a bias)")


class LayerNormLSTMCell(RecurrentCell):
    """One time step per :meth:`forward`; state ``(h, c)``, each (B, H).

    Options: :class:`LayerNormLSTMOptions` (also checked when the cell is built
    directly, e.g. ``LayerNormLSTMCell(4, 8, eps=1e-3)``).
    """

    options_model = LayerNormLSTMOptions

    def __init__(self, input_size: int, hidden_size: int, **options: Any) -> None:
        opts = LayerNormLSTMOptions.model_validate(options)
        super().__init__(input_size, hidden_size)
        self.eps = float(opts.eps)
        self.affine = opts.affine
        gates = 4 * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gates, input_size))
        self.weight_hh = nn.Parameter(torch.empty(gates, hidden_size))
        self.bias = nn.Parameter(torch.empty(gates))
        self.ln_ih = nn.LayerNorm(gates, eps=self.eps, elementwise_affine=self.affine, bias=False)
        self.ln_hh = nn.LayerNorm(gates, eps=self.eps, elementwise_affine=self.affine, bias=False)
        self.ln_c = nn.LayerNorm(hidden_size, eps=self.eps, elementwise_affine=self.affine)
        self.reset_parameters()

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, eps={self.eps}, affine={self.affine}"

    # -- initialisation ------------------------------------------------------
    def reset_parameters(self) -> None:
        """Stand-alone init (PyTorch's LSTM scale), then the recurrent hook."""
        bound = self.hidden_size**-0.5
        for param in (self.weight_ih, self.weight_hh, self.bias):
            nn.init.uniform_(param, -bound, bound)
        self.reset_parameters_for("orthogonal", 1.0)

    @torch.no_grad()
    def reset_parameters_for(self, recurrent: str, forget_bias: float) -> None:
        """Called by the model after it set every weight to U(-a, a): LayerNorms
        back to identity (gain 1, bias 0), orthogonal recurrent blocks, forget bias."""
        for ln in (self.ln_ih, self.ln_hh, self.ln_c):
            if ln.weight is not None:
                ln.weight.fill_(1.0)
            if ln.bias is not None:
                ln.bias.zero_()
        if recurrent == "orthogonal":
            orthogonal_blocks_(self.weight_hh)  # each (H, H) gate block
        h = self.hidden_size
        self.bias[h : 2 * h].fill_(forget_bias)

    # -- computation ---------------------------------------------------------
    def initial_state(self, batch_size: int, device: torch.device | str, dtype: torch.dtype) -> State:
        zeros = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return (zeros, zeros.clone())

    def _project_input(self, x: Tensor) -> Tensor:
        """x (..., I) → LN_x(W_x x) (..., 4H); independent of the state."""
        return self.ln_ih(F.linear(x, self.weight_ih))

    def _step(self, x_proj: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = state
        gates = x_proj + self.ln_hh(F.linear(h, self.weight_hh)) + self.bias  # (B, 4H)
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(self.ln_c(c))
        return h, (h, c)

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """x (B, I), state (h, c) → h (B, H), new state."""
        return self._step(self._project_input(x), state)
