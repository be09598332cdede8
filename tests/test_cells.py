"""The cell contract, checked for every registered cell and two plugin cells.

Invariants, not golden numbers: shapes, gradient flow, padding invariance,
fused path == step path, incremental decoding == teacher forcing, built-in
fused kernels == the reference step loop, initialisation, and the errors a
user gets for a bad option or a broken plugin.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from seq2seq_rnn.cells import build_cell
from seq2seq_rnn.cells.base import RecurrentCell, State, step_loop
from seq2seq_rnn.components import CELLS, register_cell
from seq2seq_rnn.config import ModelConfig
from seq2seq_rnn.errors import ConfigError, PluginError
from seq2seq_rnn.model import Seq2Seq
from tests.helpers import load_layernorm_cell

ATOL = 1e-5
VOCAB = 23
PAD = 0


# ---------------------------------------------------------------- test plugins
class MinimalLSTMCell(RecurrentCell):
    """A test plugin in plain PyTorch: LSTM without biases, state (h, c)."""

    def __init__(self, input_size: int, hidden_size: int, scale: float = 1.0) -> None:
        super().__init__(input_size, hidden_size)
        self.scale = scale
        self.weight_ih = nn.Parameter(torch.randn(4 * hidden_size, input_size) * 0.1)
        self.weight_hh = nn.Parameter(torch.randn(4 * hidden_size, hidden_size) * 0.1)

    def initial_state(self, batch_size: int, device: torch.device | str, dtype: torch.dtype) -> State:
        zeros = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return (zeros, zeros.clone())

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = state
        i, f, g, o = (x @ self.weight_ih.T + h @ self.weight_hh.T).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g) * self.scale
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


TEST_PLUGINS = {"test_minimal_lstm": MinimalLSTMCell, "test_layernorm_lstm": None}
CONTRACT_CELLS = sorted(set(CELLS.names()) | set(TEST_PLUGINS))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: intra-op threads only add overhead, and on a loaded 2-core
    machine spinning workers make these tests ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", autouse=True)
def test_plugins():
    classes = {**TEST_PLUGINS, "test_layernorm_lstm": load_layernorm_cell()}
    for name, cls in classes.items():
        register_cell(name, cls)
    yield classes
    for name in classes:
        CELLS.unregister(name)


# -------------------------------------------------------------------- helpers
def model_config(cell: str, *, bidirectional: bool, layers: int, input_feeding: bool, **extra: Any) -> ModelConfig:
    hidden = 8
    dec_hidden = hidden * (2 if bidirectional else 1)
    raw = {
        "encoder": {
            "cell": cell,
            "embedding_size": 6,
            "hidden_size": hidden,
            "layers": layers,
            "bidirectional": bidirectional,
            "dropout": 0.1,
            "embedding_dropout": 0.1,
        },
        "decoder": {
            "cell": cell,
            "embedding_size": dec_hidden,
            "hidden_size": dec_hidden,
            "layers": layers,
            "input_feeding": input_feeding,
            "dropout": 0.1,
            "embedding_dropout": 0.1,
            "output_dropout": 0.1,
        },
        # dot needs equal sizes; the other two exercise projected keys
        "attention": {"type": "dot" if not bidirectional else ("bahdanau" if input_feeding else "general")},
    }
    for section, values in extra.items():
        raw.setdefault(section, {}).update(values)
    return ModelConfig.model_validate(raw)


def build_model(cell: str, **kwargs: Any) -> Seq2Seq:
    torch.manual_seed(0)
    return Seq2Seq.from_config(model_config(cell, **kwargs), VOCAB, VOCAB).double()


def random_batch(lengths: list[int], seed: int) -> tuple[Tensor, Tensor]:
    """Token ids (B, max length) in 1..V-1, padded with PAD after each length."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, VOCAB, (len(lengths), max(lengths)), generator=gen)
    lens = torch.tensor(lengths)
    tokens[torch.arange(max(lengths)).unsqueeze(0) >= lens.unsqueeze(1)] = PAD
    return tokens, lens


SRC_LENGTHS = [4, 7, 2]
TGT_LENGTHS = [5, 3, 6]

# {uni, bi} × {1, 3 layers}; input feeding alternates so that each direction and
# each depth meets both decoder paths (input feeding always runs step by step).
contract = pytest.mark.parametrize(
    "bidirectional,layers,input_feeding",
    [(False, 1, False), (False, 3, True), (True, 1, True), (True, 3, False)],
    ids=["uni-1", "uni-3-feed", "bi-1-feed", "bi-3"],
)


def grads(model: nn.Module) -> dict[str, Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters()}


# ------------------------------------------------------------ contract tests
@pytest.mark.parametrize("cell", CONTRACT_CELLS)
@contract
def test_shapes_and_gradient_flow(cell: str, bidirectional: bool, layers: int, input_feeding: bool) -> None:
    model = build_model(cell, bidirectional=bidirectional, layers=layers, input_feeding=input_feeding)
    model.train()
    src, src_len = random_batch(SRC_LENGTHS, seed=1)
    tgt, _ = random_batch(TGT_LENGTHS, seed=2)
    logits = model(src, src_len, tgt)
    assert logits.shape == (len(SRC_LENGTHS), tgt.size(1), VOCAB)
    mem, state = model.encode(src, src_len)
    assert mem.memory.shape == (len(SRC_LENGTHS), src.size(1), model.encoder.output_size)
    assert all(s.size(0) == len(SRC_LENGTHS) for s in state)
    logits.logsumexp(-1).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"no gradient reaches {name}"
        assert torch.isfinite(param.grad).all(), f"non-finite gradient in {name}"
    encoder_cells = [p for n, p in model.named_parameters() if n.startswith("encoder.") and "cells" in n]
    assert any(p.grad.abs().sum() > 0 for p in encoder_cells), "the encoder's cells receive zero gradient"


@pytest.mark.parametrize("cell", CONTRACT_CELLS)
@contract
def test_padding_invariance(cell: str, bidirectional: bool, layers: int, input_feeding: bool) -> None:
    model = build_model(cell, bidirectional=bidirectional, layers=layers, input_feeding=input_feeding).eval()
    src, src_len = random_batch(SRC_LENGTHS, seed=3)
    tgt, _ = random_batch(TGT_LENGTHS, seed=4)
    with torch.no_grad():
        batched = model(src, src_len, tgt)
        for b, (s_len, t_len) in enumerate(zip(SRC_LENGTHS, TGT_LENGTHS, strict=True)):
            alone = model(src[b : b + 1, :s_len], src_len[b : b + 1], tgt[b : b + 1, :t_len])
            torch.testing.assert_close(batched[b : b + 1, :t_len], alone, atol=ATOL, rtol=0)


@pytest.mark.parametrize("cell", CONTRACT_CELLS)
@contract
def test_fused_path_equals_step_path(cell: str, bidirectional: bool, layers: int, input_feeding: bool) -> None:
    model = build_model(cell, bidirectional=bidirectional, layers=layers, input_feeding=input_feeding).eval()
    src, src_len = random_batch(SRC_LENGTHS, seed=5)
    tgt, _ = random_batch(TGT_LENGTHS, seed=6)
    results = []
    for fused in (True, False):
        model.set_fused(fused)
        model.zero_grad(set_to_none=True)
        logits = model(src, src_len, tgt)
        logits.logsumexp(-1).sum().backward()
        results.append((logits.detach(), grads(model)))
    (fused_logits, fused_grads), (step_logits, step_grads) = results
    torch.testing.assert_close(fused_logits, step_logits, atol=ATOL, rtol=0)
    for name, grad in fused_grads.items():
        torch.testing.assert_close(grad, step_grads[name], atol=ATOL, rtol=0, msg=f"gradient of {name}")


@pytest.mark.parametrize("cell", CONTRACT_CELLS)
@contract
def test_incremental_decoding_equals_teacher_forcing(
    cell: str, bidirectional: bool, layers: int, input_feeding: bool
) -> None:
    model = build_model(cell, bidirectional=bidirectional, layers=layers, input_feeding=input_feeding).eval()
    src, src_len = random_batch(SRC_LENGTHS, seed=7)
    tgt, _ = random_batch(TGT_LENGTHS, seed=8)
    with torch.no_grad():
        mem, state = model.encode(src, src_len)
        forced = model.decoder(tgt, state, mem)
        steps = []
        for t in range(tgt.size(1)):
            logits, state, weights = model.decoder.step(tgt[:, t], state, mem)
            steps.append(logits)
            assert weights is not None and weights.shape == src.shape
            torch.testing.assert_close(weights.sum(-1), torch.ones(len(SRC_LENGTHS), dtype=weights.dtype))
            assert (weights[src == PAD] == 0).all(), "attention on padding"
    torch.testing.assert_close(torch.stack(steps, dim=1), forced, atol=ATOL, rtol=0)


# ------------------------------------------------ built-in fused == step loop
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "test_layernorm_lstm"])
@pytest.mark.parametrize("lengths", [[5, 2, 7], [3, 1, 4]], ids=["full", "all-padded-tail"])
def test_forward_sequence_equals_step_loop(cell: str, lengths: list[int]) -> None:
    torch.manual_seed(0)
    batch, steps, inputs, hidden = len(lengths), 7, 5, 8
    cell_module = build_cell(cell, inputs, hidden, {}, "test").double()
    lens = torch.tensor(lengths)
    x0 = torch.randn(batch, steps, inputs, dtype=torch.float64)
    state0 = tuple(torch.randn_like(s) for s in cell_module.initial_state(batch, "cpu", torch.float64))
    results = []
    for run in (cell_module.forward_sequence, lambda x, s, n: step_loop(cell_module, x, s, n)):
        cell_module.zero_grad(set_to_none=True)
        x = x0.clone().requires_grad_()
        state = tuple(s.clone().requires_grad_() for s in state0)
        out, final = run(x, state, lens)
        # a loss that reads the outputs and every final-state tensor
        loss = (out * torch.linspace(-1, 1, hidden, dtype=out.dtype)).sum() + sum((f**2).sum() for f in final)
        loss.backward()
        results.append((out.detach(), [f.detach() for f in final], x.grad, [s.grad for s in state], grads(cell_module)))
    fused, reference = results
    assert fused[0].shape == (batch, steps, hidden)
    past_end = torch.arange(steps).unsqueeze(0) >= lens.unsqueeze(1)  # (B, T)
    assert (fused[0][past_end] == 0).all(), "outputs past a sentence's length must be zero"
    for what, a, b in zip(["outputs", "final state", "d/dx", "d/dstate", "d/dweights"], fused, reference, strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0, msg=lambda m, w=what: f"{cell} {w}: {m}")


def test_final_state_is_state_after_last_real_token() -> None:
    torch.manual_seed(0)
    cell = build_cell("lstm", 4, 6, {}, "test").double()
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    state = cell.initial_state(2, "cpu", torch.float64)
    _, final = cell.forward_sequence(x, state, torch.tensor([5, 3]))
    _, short_final = cell.forward_sequence(x[1:, :3], tuple(s[1:] for s in state))
    for f, s in zip(final, short_final, strict=True):
        torch.testing.assert_close(f[1:], s, atol=ATOL, rtol=0)


# ---------------------------------------------------------------------- init
def assert_orthogonal_blocks(weight: Tensor, hidden: int, where: str) -> None:
    for k, block in enumerate(weight.detach().split(hidden, dim=0)):
        eye = torch.eye(hidden, dtype=block.dtype)
        torch.testing.assert_close(block @ block.T, eye, atol=1e-5, rtol=0, msg=f"{where} block {k} not orthogonal")


@pytest.mark.parametrize("forget_bias", [1.0, -0.5])
def test_lstm_init(forget_bias: float) -> None:
    cfg = model_config("lstm", bidirectional=True, layers=2, input_feeding=True, init={"forget_bias": forget_bias})
    model = Seq2Seq.from_config(cfg, VOCAB, VOCAB)
    cells = [m for m in model.modules() if isinstance(m, RecurrentCell)]
    assert len(cells) == 2 * 2 + 2
    for cell in cells:
        h = cell.hidden_size
        rnn = cell.rnn
        forget = rnn.bias_ih_l0[h : 2 * h] + rnn.bias_hh_l0[h : 2 * h]
        torch.testing.assert_close(forget, torch.full_like(forget, forget_bias))
        assert_orthogonal_blocks(rnn.weight_hh_l0, h, "lstm weight_hh")
        # the other weights keep the uniform init
        assert rnn.weight_ih_l0.abs().max() <= cfg.init.uniform
    for embed in (model.encoder.embed, model.decoder.embed):
        assert (embed.weight[PAD] == 0).all(), "padding embedding row must be zero"
        assert (embed.weight[1:] != 0).any()


@pytest.mark.parametrize("cell", ["rnn", "gru", "test_minimal_lstm", "test_layernorm_lstm"])
def test_recurrent_blocks_are_orthogonal(cell: str) -> None:
    model = Seq2Seq.from_config(model_config(cell, bidirectional=False, layers=2, input_feeding=True), VOCAB, VOCAB)
    checked = 0
    for name, param in model.named_parameters():
        if "weight_hh" in name:
            hidden = param.size(1)
            assert_orthogonal_blocks(param, hidden, name)
            checked += 1
    assert checked == 4


def test_uniform_recurrent_init_is_not_orthogonal() -> None:
    cfg = model_config("lstm", bidirectional=False, layers=1, input_feeding=True, init={"recurrent": "uniform"})
    model = Seq2Seq.from_config(cfg, VOCAB, VOCAB)
    weight = model.encoder.forward_cells[0].rnn.weight_hh_l0
    assert weight.abs().max() <= cfg.init.uniform


def test_layernorm_plugin_init(test_plugins: dict[str, type]) -> None:
    cfg = model_config("test_layernorm_lstm", bidirectional=False, layers=1, input_feeding=True)
    model = Seq2Seq.from_config(cfg, VOCAB, VOCAB)
    cell = model.encoder.forward_cells[0]
    assert isinstance(cell, test_plugins["test_layernorm_lstm"])
    h = cell.hidden_size
    torch.testing.assert_close(cell.bias[h : 2 * h], torch.full((h,), cfg.init.forget_bias))
    for ln in (cell.ln_ih, cell.ln_hh, cell.ln_c):  # back to identity after the model's uniform init
        assert (ln.weight == 1).all()
    assert (cell.ln_c.bias == 0).all()


def test_layernorm_plugin_options(test_plugins: dict[str, type]) -> None:
    cell = build_cell("test_layernorm_lstm", 4, 6, {"eps": 1e-3, "affine": False}, "model.encoder")
    assert cell.eps == 1e-3 and not list(cell.ln_c.parameters())
    for bad in ({"eps": 0.0}, {"eps": "small"}, {"affine": "yes"}):
        with pytest.raises(ConfigError, match=r"model\.encoder\.cell_options"):
            build_cell("test_layernorm_lstm", 4, 6, bad, "model.encoder")


# -------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "cell,accepted", [("lstm", "none"), ("test_layernorm_lstm", "eps, affine"), ("test_minimal_lstm", "scale")]
)
def test_unknown_cell_option_is_config_error(cell: str, accepted: str) -> None:
    # (a typed cell's options fail already at recipe load: tests/test_cell_options.py; here the model refuses them too)
    cfg = model_config(cell, bidirectional=False, layers=1, input_feeding=True)
    cfg = cfg.model_copy(update={"encoder": cfg.encoder.model_copy(update={"cell_options": {"epz": 1}})})
    with pytest.raises(ConfigError) as info:
        Seq2Seq.from_config(cfg, VOCAB, VOCAB)
    message = str(info.value)
    assert message.startswith("model.encoder.cell_options")
    assert "'epz'" in message and f"Accepted options: {accepted}" in message


def test_option_passed_to_base_class_is_config_error() -> None:
    class KwargsCell(MinimalLSTMCell):
        def __init__(self, input_size: int, hidden_size: int, **options: Any) -> None:
            super().__init__(input_size, hidden_size, **options)

    class Base(RecurrentCell):  # forwards unknown options to RecurrentCell
        def __init__(self, input_size: int, hidden_size: int, **options: Any) -> None:
            super().__init__(input_size, hidden_size, **options)

        initial_state = MinimalLSTMCell.initial_state
        forward = MinimalLSTMCell.forward

    register_cell("test_kwargs_cell", Base)
    try:
        with pytest.raises(ConfigError, match=r"model\.decoder\.cell_options.*'bogus'"):
            build_cell("test_kwargs_cell", 4, 4, {"bogus": 1}, "model.decoder")
    finally:
        CELLS.unregister("test_kwargs_cell")


def _broken_cell(**overrides: Any) -> type[RecurrentCell]:
    """A fresh MinimalLSTMCell subclass (fresh, so the one-time check runs)."""
    return type("BrokenCell", (MinimalLSTMCell,), {"__module__": __name__, **overrides})


@pytest.mark.parametrize(
    "overrides,problem",
    [
        ({"forward": lambda self, x, state: (torch.zeros(x.size(0), 3), state)}, "shape"),
        ({"forward": lambda self, x, state: (state[0], list(state))}, "tuple"),
        ({"initial_state": lambda self, b, d, t: [torch.zeros(b, self.hidden_size)] * 2}, "tuple"),
        ({"initial_state": lambda self, b, d, t: (torch.zeros(self.hidden_size),)}, "batch"),
        ({"forward": lambda self, x, state: 1 / 0}, "ZeroDivisionError"),
    ],
    ids=["wrong-h-shape", "state-list", "initial-list", "no-batch-dim", "raises"],
)
def test_broken_plugin_cell_is_plugin_error(overrides: dict[str, Any], problem: str) -> None:
    register_cell("test_broken_cell", _broken_cell(**overrides))
    try:
        cfg = model_config("test_broken_cell", bidirectional=False, layers=1, input_feeding=True)
        with pytest.raises(PluginError) as info:
            Seq2Seq.from_config(cfg, VOCAB, VOCAB)
    finally:
        CELLS.unregister("test_broken_cell")
    message = str(info.value)
    assert "'test_broken_cell'" in message and f"register() in {__name__}" in message and problem in message


@pytest.mark.parametrize("obj", [nn.LSTMCell, lambda i, h: None, "lstm", RecurrentCell])
def test_registering_a_non_cell_is_plugin_error(obj: Any) -> None:
    with pytest.raises(PluginError, match="'test_not_a_cell'"):
        register_cell("test_not_a_cell", obj)
    assert "test_not_a_cell" not in CELLS.names()


def test_dot_attention_with_mismatched_sizes_is_config_error() -> None:
    cfg = model_config("lstm", bidirectional=True, layers=1, input_feeding=True, attention={"type": "dot"})
    cfg = cfg.model_copy(update={"decoder": cfg.decoder.model_copy(update={"hidden_size": 8, "embedding_size": 8})})
    with pytest.raises(ConfigError, match=r"model\.attention\.type.*\(8\).*\(16"):
        Seq2Seq.from_config(cfg, VOCAB, VOCAB)
