"""Loop-invariant hoisting of plugin cells equals the plain step loop, and
refuses cells where hoisting would change the result."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from seq2seq_rnn.cells import RecurrentCell
from seq2seq_rnn.cells.base import State, step_loop
from tests.helpers import load_layernorm_cell

LayerNormLSTMCell = load_layernorm_cell()


class PlainGRU(RecurrentCell):
    """A GRU as a plugin author would write it: one step, no tricks."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.x2h = nn.Linear(input_size, 3 * hidden_size)
        self.h2h = nn.Linear(hidden_size, 3 * hidden_size)

    def initial_state(self, batch_size: int, device: torch.device | str, dtype: torch.dtype) -> State:
        return (torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype),)

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        xr, xz, xn = self.x2h(x).chunk(3, dim=-1)
        hr, hz, hn = self.h2h(state[0]).chunk(3, dim=-1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        h = (1 - z) * torch.tanh(xn + r * hn) + z * state[0]
        return h, (h,)


class BatchMixing(PlainGRU):
    """Normalises x over the batch: hoisting over B·T rows would change it."""

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        return super().forward(x - x.mean(0, keepdim=True), state)


class Branchy(PlainGRU):
    """Data-dependent control flow: untraceable, keeps the plain loop."""

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        if bool(state[0].sum() > 1e9):
            return state[0], state
        return super().forward(x, state)


def run_both(cell: RecurrentCell) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    torch.manual_seed(0)
    x = torch.randn(4, 6, cell.input_size, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([6, 2, 5, 1])
    results = []
    for fast in (True, False):
        state = cell.initial_state(4, "cpu", torch.float64)
        out, final = cell.forward_sequence(x, state, lengths) if fast else step_loop(cell, x, state, lengths)
        loss = out.pow(2).sum() + sum(s.sum() for s in final)
        grads = torch.autograd.grad(loss, [x, *cell.parameters()])
        results.append((out, *final, *grads))
    return results[0], results[1]


@pytest.mark.parametrize("cls", [PlainGRU, LayerNormLSTMCell])
def test_hoisted_sequence_equals_step_loop(cls: type) -> None:
    cell = cls(5, 7).double()
    fast, slow = run_both(cell)
    assert cell.__dict__["_hoisted_plan"] is not None  # it really took the hoisted path
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("cls", [BatchMixing, Branchy])
def test_unsafe_cells_keep_the_plain_loop(cls: type) -> None:
    cell = cls(5, 7).double()
    fast, slow = run_both(cell)
    assert cell.__dict__["_hoisted_plan"] is None
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b)


def test_hoisting_adds_no_parameters_to_the_state_dict() -> None:
    cell = LayerNormLSTMCell(5, 7)
    keys = set(cell.state_dict())
    cell.forward_sequence(torch.randn(2, 3, 5), cell.initial_state(2, "cpu", torch.float32))
    assert set(cell.state_dict()) == keys
