"""The fast path of plugin cells (``cells/fast.py``: oneDNN products, weight gradients
summed once per sequence; ``cells/hoist.py``: the checked traced graphs) computes
what the plain step loop computes — values and gradients, fp32 and bf16 autocast —
for every registered cell, the example plugin and cells of unusual shape, and
falls back (a debug line, never an error) where it cannot be used."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from seq2seq_rnn.cells import RecurrentCell, build_cell
from seq2seq_rnn.cells.base import State, step_loop
from seq2seq_rnn.cells.fast import linear, rewrite_linears, set_onednn
from seq2seq_rnn.cells.loop import masked_steps
from seq2seq_rnn.components import CELLS
from tests.helpers import load_layernorm_cell

LayerNormLSTMCell = load_layernorm_cell()
needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN in this build")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    set_onednn(True)


class PlainLSTM(RecurrentCell):
    """A plugin LSTM written with nn.Linear (the bench's cell)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.x2g = nn.Linear(input_size, 4 * hidden_size)
        self.h2g = nn.Linear(hidden_size, 4 * hidden_size, bias=False)

    def initial_state(self, batch_size: int, device: torch.device | str, dtype: torch.dtype) -> State:
        zeros = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return zeros, zeros.clone()

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        i, f, g, o = (self.x2g(x) + self.h2g(state[0])).chunk(4, dim=-1)
        c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


class ThreeStates(RecurrentCell):
    """State (h, c, n) of different widths; products written as ``x @ W.T`` and F.linear."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.w_x = nn.Parameter(torch.randn(3 * hidden_size, input_size) * 0.3)
        self.w_h = nn.Parameter(torch.randn(3 * hidden_size, hidden_size) * 0.3)
        self.w_n = nn.Parameter(torch.randn(2, hidden_size) * 0.3)
        self.b = nn.Parameter(torch.randn(3 * hidden_size) * 0.1)

    def initial_state(self, batch_size: int, device: torch.device | str, dtype: torch.dtype) -> State:
        h = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return h, h.clone(), torch.zeros(batch_size, 2, device=device, dtype=dtype)

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        h, c, n = state
        a, f, g = (x @ self.w_x.T + F.linear(h, self.w_h, self.b)).chunk(3, dim=-1)
        c = torch.sigmoid(f) * c + torch.tanh(a) * torch.sigmoid(g)
        h = torch.tanh(c) + n @ self.w_n * 0.1
        n = torch.tanh(F.linear(h, self.w_n))
        return h, (h, c, n)


class OwnSequence(PlainLSTM):
    """Brings its own forward_sequence: the toolkit must call it, not a hoisted loop."""

    calls = 0

    def forward_sequence(self, x: Tensor, state: State, lengths: Tensor | None = None) -> tuple[Tensor, State]:
        type(self).calls += 1
        return step_loop(self, x, state, lengths)


class BatchMixing(PlainLSTM):
    """Centres x over the batch: hoisting over B·T rows would change it (falls back)."""

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        return super().forward(x - x.mean(0, keepdim=True), state)


class Branchy(PlainLSTM):
    """Data-dependent control flow: untraceable, both fast paths fall back."""

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        if bool(state[0].sum() > 1e9):
            return state[0], state
        return super().forward(x, state)


UNUSUAL = [PlainLSTM, LayerNormLSTMCell, ThreeStates, OwnSequence, BatchMixing, Branchy]


def _sequence_results(cell: RecurrentCell, run, dtype=torch.float32, autocast: bool = False, lengths=None):
    torch.manual_seed(0)
    lengths = torch.tensor([6, 2, 5, 1]) if lengths is None else lengths
    x = torch.randn(len(lengths), 6, cell.input_size, dtype=dtype, requires_grad=True)
    state = tuple(torch.randn_like(s) * 0.5 for s in cell.initial_state(len(lengths), "cpu", dtype))
    with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
        out, final = run(cell, x, state, lengths)
    loss = out.float().pow(2).sum() + sum(s.float().pow(2).sum() for s in final)
    params = [p for p in cell.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [x, *params])
    return [out, *final, *grads]


def fast_sequence(cell, x, state, lengths):
    return cell.forward_sequence(x, state, lengths)


def fast_steps(cell, x, state, lengths):
    return masked_steps(cell.forward_step, [(x_t,) for x_t in x.unbind(1)], state, lengths)


def _close(got, ref, rtol, atol) -> None:
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a.float(), b.float(), rtol=rtol, atol=atol)


@needs_onednn
@pytest.mark.parametrize("cls", UNUSUAL, ids=lambda c: c.__name__)
@pytest.mark.parametrize("path", [fast_sequence, fast_steps], ids=["sequence", "step"])
def test_fast_paths_equal_the_step_loop_fp32(cls: type, path) -> None:
    cell = cls(5, 7)
    ref = _sequence_results(cell, step_loop)
    got = _sequence_results(cell, path)
    _close(got, ref, rtol=1e-4, atol=1e-5)


@needs_onednn
@pytest.mark.parametrize("lengths", [[3, 6, 0, 6, 1], [6, 6, 6], [0, 0], [2, 4, 4, 1]], ids=str)
@pytest.mark.parametrize("cls", [PlainLSTM, ThreeStates], ids=lambda c: c.__name__)
def test_the_packed_loop_skips_padding_without_changing_a_result(cls: type, lengths: list[int]) -> None:
    """Sentences sorted, finished rows leave the loop: still the masked loop's values and gradients."""
    cell = cls(5, 7)
    ref = _sequence_results(cell, step_loop, lengths=torch.tensor(lengths))
    got = _sequence_results(cell, fast_sequence, lengths=torch.tensor(lengths))
    _close(got, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls", UNUSUAL, ids=lambda c: c.__name__)
def test_fast_paths_equal_the_step_loop_under_bf16_autocast(cls: type) -> None:
    cell = cls(5, 7)
    ref = _sequence_results(cell, step_loop, autocast=True)
    for path in (fast_sequence, fast_steps):
        got = _sequence_results(cell, path, autocast=True)
        _close(got, ref, rtol=3e-2, atol=3e-2)  # hoisting multiplies B·T rows at once: bf16 rounding differs


@needs_onednn
@pytest.mark.parametrize("name", sorted(CELLS.names()))
def test_every_registered_cell_keeps_its_function(name: str) -> None:
    cell = build_cell(name, 5, 7, {}, "model.encoder")
    for path in (fast_sequence, fast_steps):
        _close(_sequence_results(cell, path), _sequence_results(cell, step_loop), rtol=1e-4, atol=1e-5)


@needs_onednn
def test_plugin_cells_take_the_onednn_path_and_the_others_fall_back(caplog: pytest.LogCaptureFixture) -> None:
    x = torch.randn(3, 4, 5)
    plans = {}
    with caplog.at_level(logging.DEBUG, logger="seq2seq_rnn.cells.hoist"):
        for cls in (PlainLSTM, LayerNormLSTMCell, ThreeStates, BatchMixing, Branchy):
            cell = cls(5, 7)
            state = cell.initial_state(3, "cpu", torch.float32)
            cell.forward_sequence(x, state)
            cell.forward_step(x[:, 0], state)
            plans[cls.__name__] = (cell.__dict__["_hoisted_plan"], cell.__dict__["_step_plan"])
    for name in ("PlainLSTM", "LayerNormLSTMCell", "ThreeStates"):
        hoisted, step = plans[name]
        assert hoisted is not None and "fast_linear" in hoisted.step.code, name  # recurrent product on oneDNN
        assert step is not None and "fast_linear" in step.code, name
    assert plans["BatchMixing"][0] is None and plans["BatchMixing"][1] is not None  # per step it is exact
    assert plans["Branchy"] == (None, None)
    assert "Branchy" in caplog.text and all(r.levelno == logging.DEBUG for r in caplog.records)


def test_a_cell_with_its_own_forward_sequence_is_called_as_written() -> None:
    OwnSequence.calls = 0
    cell = OwnSequence(5, 7)
    cell.forward_sequence(torch.randn(2, 3, 5), cell.initial_state(2, "cpu", torch.float32))
    assert OwnSequence.calls == 1 and "_hoisted_plan" not in cell.__dict__


@pytest.mark.parametrize("mode", ["no_grad", "inference", "bf16"])
def test_the_first_call_under_any_mode_still_finds_the_fast_path(mode: str) -> None:
    cell = PlainLSTM(5, 7)
    x = torch.randn(3, 4, 5)
    state = cell.initial_state(3, "cpu", torch.float32)
    ctx = {
        "no_grad": torch.no_grad(),
        "inference": torch.inference_mode(),
        "bf16": torch.autocast("cpu", torch.bfloat16),
    }[mode]
    with ctx:
        cell.forward_sequence(x, state)
        cell.forward_step(x[:, 0], state)
    assert cell.__dict__["_hoisted_plan"] is not None and cell.__dict__["_step_plan"] is not None


@needs_onednn
def test_deferred_weight_gradients_count_each_backward_pass_once() -> None:
    """retain_graph twice doubles the gradient; a pass that reaches only the input
    leaves nothing behind for the next."""
    cell = PlainLSTM(5, 7)
    x = torch.randn(3, 4, 5, requires_grad=True)
    state = cell.initial_state(3, "cpu", torch.float32)
    ref_out, _ = step_loop(cell, x, state, None)
    ref = torch.autograd.grad(ref_out.pow(2).sum(), cell.h2g.weight)[0]
    out, _ = cell.forward_sequence(x, state)
    loss = out.pow(2).sum()
    torch.autograd.grad(loss, x, retain_graph=True)  # the input only
    loss.backward(retain_graph=True)
    loss.backward()
    torch.testing.assert_close(cell.h2g.weight.grad, 2 * ref, rtol=1e-4, atol=1e-6)


@needs_onednn
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_linear_matches_f_linear_and_steps_aside_when_it_must() -> None:
    x, w, b = torch.randn(6, 5, requires_grad=True), torch.randn(4, 5, requires_grad=True), torch.randn(4)
    torch.testing.assert_close(linear(x, w, b), F.linear(x, w, b))
    (ga,) = torch.autograd.grad(linear(x, w, b).sum(), w)
    (gb,) = torch.autograd.grad(F.linear(x, w, b).sum(), w)
    torch.testing.assert_close(ga, gb)
    traced = torch.jit.trace(linear, (x.detach(), w.detach(), b))
    assert "mkldnn" not in str(traced.graph)  # exports record portable ops
    w.data.mul_(2)  # an optimizer step: the cached transpose must follow
    (gx,) = torch.autograd.grad(linear(x, w, b).sum(), x)
    torch.testing.assert_close(gx, torch.ones(6, 4) @ w.detach())


def test_rewrite_leaves_other_products_alone() -> None:
    class Stored(nn.Module):  # W stored (I, O): x @ W is not a linear of W
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(5, 4))

        def forward(self, x: Tensor) -> Tensor:
            return x @ self.w

    gm = torch.fx.symbolic_trace(Stored())
    assert rewrite_linears(gm) == 0


def test_the_decoder_steps_through_forward_step_for_plugin_cells() -> None:
    from seq2seq_rnn.cells.base import set_hoisting
    from seq2seq_rnn.components import register_cell
    from seq2seq_rnn.config import ModelConfig
    from seq2seq_rnn.model import Seq2Seq

    if "test_fast_plain_lstm" not in CELLS.names():
        register_cell("test_fast_plain_lstm", PlainLSTM)
    cfg = ModelConfig.model_validate(
        {
            "encoder": {"cell": "test_fast_plain_lstm", "embedding_size": 8, "hidden_size": 8},
            "decoder": {"cell": "test_fast_plain_lstm", "embedding_size": 8, "hidden_size": 8, "input_feeding": True},
        }
    )
    torch.manual_seed(0)
    model = Seq2Seq.from_config(cfg, 11, 13).eval()
    src, lengths, tgt = torch.randint(4, 11, (2, 5)), torch.tensor([5, 3]), torch.randint(4, 13, (2, 4))
    with torch.no_grad():
        fast = model(src, lengths, tgt)
        set_hoisting(False)
        try:
            plain = model(src, lengths, tgt)
        finally:
            set_hoisting(True)
    assert model.decoder.cells[0].__dict__["_step_plan"] is not None
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)
