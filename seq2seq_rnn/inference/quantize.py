"""int8 decoding on the CPU: dynamic quantization of the built-in cells and the Linear layers.

Dynamic quantization stores weights as int8 and quantizes each activation on the
fly from its own range, so it needs no calibration data and no retraining. It is
done with ``torch.ao.quantization.quantize_dynamic``: deprecated in favour of
torchao, but torchao's ``quantize_`` handles Linear layers only, not the fused
LSTM/GRU kernels that carry half of a decoder step, so this module keeps the
torch.ao path while torch ships it.

What is quantized:

- every ``nn.Linear`` outside a recurrent cell (attention projections, the
  output layer, the bridge);
- the built-in ``lstm`` and ``gru`` cells: their fused sequence kernel (encoder)
  and their one-step kernel (decoder). The ``rnn`` (tanh) cell stays fp32:
  torch has no dynamic int8 tanh-RNN kernel;
- a plugin cell only if it opts in, by defining ``quantize_int8(self) ->
  RecurrentCell`` (returning its int8 replacement). Other plugin cells, and
  every Linear inside them, stay fp32.

Because each activation is quantized from its own range, int8 results depend
slightly on which sentences share a batch; fp32 results do not.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from seq2seq_rnn.cells.base import RecurrentCell, State
from seq2seq_rnn.cells.builtin import GRUCell, LSTMCell
from seq2seq_rnn.errors import ConfigError

QUANTIZE_CHOICES = ("none", "int8")


def _dynamic(module: nn.Module, types: set[type[nn.Module]]) -> nn.Module:
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(nn.Sequential(module), types, dtype=torch.qint8)[0]


def _step_module(rnn: nn.RNNBase, cls: type[nn.RNNCellBase]) -> nn.RNNCellBase:
    """The one-step ``nn.LSTMCell``/``nn.GRUCell`` with the weights of a one-layer fused module."""
    cell = cls(rnn.input_size, rnn.hidden_size)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(rnn, f"{name}_l0"))
    return cell


class Int8LSTMCell(LSTMCell):
    """The built-in LSTM cell with int8 weights: fused sequence path and step path."""

    def __init__(self, cell: LSTMCell) -> None:
        RecurrentCell.__init__(self, cell.input_size, cell.hidden_size)
        self.rnn = _dynamic(copy.deepcopy(cell.rnn), {nn.LSTM})
        self.step = _dynamic(_step_module(cell.rnn, nn.LSTMCell), {nn.LSTMCell})

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = self.step(x, (state[0], state[1]))
        return h, (h, c)


class Int8GRUCell(GRUCell):
    """The built-in GRU cell with int8 weights: fused sequence path and step path."""

    def __init__(self, cell: GRUCell) -> None:
        RecurrentCell.__init__(self, cell.input_size, cell.hidden_size)
        self.rnn = _dynamic(copy.deepcopy(cell.rnn), {nn.GRU})
        self.step = _dynamic(_step_module(cell.rnn, nn.GRUCell), {nn.GRUCell})

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        h = self.step(x, state[0])
        return h, (h,)


def _int8_cell(cell: RecurrentCell) -> RecurrentCell | None:
    """The int8 replacement of a cell, or None to keep it in fp32."""
    if isinstance(cell, (Int8LSTMCell, Int8GRUCell)):
        return None
    if type(cell) is LSTMCell:
        return Int8LSTMCell(cell)
    if type(cell) is GRUCell:
        return Int8GRUCell(cell)
    opt_in = getattr(cell, "quantize_int8", None)
    return opt_in() if callable(opt_in) else None


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (CPU, eval) with int8 cells and Linear layers as described above."""
    model = copy.deepcopy(model).cpu().eval()
    cells = [(name, m) for name, m in model.named_modules() if isinstance(m, RecurrentCell)]
    for name, cell in cells:
        replacement = _int8_cell(cell)
        if replacement is not None:
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, replacement)
    inside_cells = tuple(f"{name}." for name, _ in cells)
    linears = {name for name, m in model.named_modules() if type(m) is nn.Linear and not name.startswith(inside_cells)}
    if linears:
        from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            quantize_dynamic(model, {name: default_dynamic_qconfig for name in linears}, inplace=True)
    return model


def apply_quantization(model: nn.Module, mode: str, device: torch.device) -> nn.Module:
    """``mode`` 'none' → the model unchanged; 'int8' → :func:`quantize_int8` (CPU only)."""
    if mode == "none":
        return model
    if mode != "int8":
        raise ConfigError(f"--quantize: unknown mode {mode!r}. Valid choices: {', '.join(QUANTIZE_CHOICES)}")
    if device.type != "cpu":
        raise ConfigError("--quantize int8 runs on the CPU (dynamic int8 kernels); add --device cpu")
    return quantize_int8(model)


def describe(model: nn.Module) -> dict[str, Any]:
    """Counts of what is int8 and what stayed fp32 (for logs and tests)."""
    from torch.ao.nn.quantized import dynamic as qd

    q_linear = sum(isinstance(m, qd.Linear) for m in model.modules())
    fp_linear = sum(type(m) is nn.Linear for m in model.modules())
    cells = [m for m in model.modules() if isinstance(m, RecurrentCell)]
    int8_cells = sum(isinstance(m, (Int8LSTMCell, Int8GRUCell)) or getattr(m, "is_int8", False) for m in cells)
    return {"int8_linear": q_linear, "fp32_linear": fp_linear, "int8_cells": int8_cells, "cells": len(cells)}
