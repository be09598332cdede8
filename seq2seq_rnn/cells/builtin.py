"""Built-in cells backed by PyTorch's fused recurrent kernels.

Each cell owns a one-layer ``nn.RNN``/``nn.LSTM``/``nn.GRU``: the sequence path
runs the fused kernel (cuDNN on GPU, oneDNN on CPU) over packed sequences, and
the step path applies the same weights with ``torch.*_cell`` — so both paths
compute the same function (tested in tests/test_cells.py).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq_rnn.cells.base import RecurrentCell, State


class FusedCell(RecurrentCell):
    """Shared plumbing: a one-layer fused RNN module and its step function."""

    rnn: nn.RNNBase

    def _weights(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        r = self.rnn
        return r.weight_ih_l0, r.weight_hh_l0, r.bias_ih_l0, r.bias_hh_l0

    def initial_state(self, batch_size: int, device: torch.device | str, dtype: torch.dtype) -> State:
        return (torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype),)

    def _to_fused(self, state: State) -> Tensor | tuple[Tensor, Tensor]:
        return state[0].unsqueeze(0).contiguous()  # (1, B, H)

    def _from_fused(self, fused: Tensor | tuple[Tensor, Tensor]) -> State:
        return (fused.squeeze(0),)

    def forward_sequence(self, x: Tensor, state: State, lengths: Tensor | None = None) -> tuple[Tensor, State]:
        # x (B, T, I) → outputs (B, T, H)
        hx = self._to_fused(state)
        if lengths is None:
            out, final = self.rnn(x, hx)
            return out, self._from_fused(final)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, final = self.rnn(packed, hx)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        return out, self._from_fused(final)

    def forward_outputs(self, x: Tensor, state: State, lengths: Tensor | None = None) -> Tensor:
        # Padding comes after a sentence's last token, so it cannot change the outputs before it: run the
        # fused kernel over the padded batch and zero what lies past each length. oneDNN's RNN kernel
        # (fp32 and bf16) takes no packed sequence; the packed path is PyTorch's step-by-step loop, ~2× slower.
        out, _ = self.rnn(x, self._to_fused(state))  # (B, T, H)
        if lengths is None:
            return out
        alive = torch.arange(x.size(1), device=x.device) < lengths.to(x.device).unsqueeze(1)  # (B, T)
        return out * alive.unsqueeze(-1).to(out.dtype)

    def reset_parameters_for(self, recurrent: str, forget_bias: float) -> None:
        if recurrent == "orthogonal":
            from seq2seq_rnn.cells.base import orthogonal_blocks_

            orthogonal_blocks_(self.rnn.weight_hh_l0)


class TanhRNNCell(FusedCell):
    """Simple RNN: h_t = tanh(W_x x_t + W_h h_{t-1} + b)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.rnn = nn.RNN(input_size, hidden_size, nonlinearity="tanh", batch_first=True)

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        h = torch.rnn_tanh_cell(x, state[0], *self._weights())
        return h, (h,)


class GRUCell(FusedCell):
    """GRU (Cho et al., 2014) in PyTorch's formulation (reset gate after W_hn h)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.rnn = nn.GRU(input_size, hidden_size, batch_first=True)

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        h = torch.gru_cell(x, state[0], *self._weights())
        return h, (h,)


class LSTMCell(FusedCell):
    """LSTM (Hochreiter & Schmidhuber, 1997); state (h, c)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.rnn = nn.LSTM(input_size, hidden_size, batch_first=True)

    def initial_state(self, batch_size: int, device: torch.device | str, dtype: torch.dtype) -> State:
        zeros = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return (zeros, zeros.clone())

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = torch.lstm_cell(x, (state[0], state[1]), *self._weights())
        return h, (h, c)

    def _to_fused(self, state: State) -> tuple[Tensor, Tensor]:
        return state[0].unsqueeze(0).contiguous(), state[1].unsqueeze(0).contiguous()

    def _from_fused(self, fused: tuple[Tensor, Tensor]) -> State:  # type: ignore[override]
        return fused[0].squeeze(0), fused[1].squeeze(0)

    def reset_parameters_for(self, recurrent: str, forget_bias: float) -> None:
        super().reset_parameters_for(recurrent, forget_bias)
        h = self.hidden_size
        with torch.no_grad():  # gate order i, f, g, o; the two biases add up
            self.rnn.bias_ih_l0[h : 2 * h].fill_(forget_bias)
            self.rnn.bias_hh_l0[h : 2 * h].zero_()
