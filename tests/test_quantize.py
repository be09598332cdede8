"""int8 decoding: what gets quantized, and that int8 translations stay close to fp32."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.ao.nn.quantized import dynamic as qd

from seq2seq_rnn.cells.base import RecurrentCell
from seq2seq_rnn.config import ModelConfig
from seq2seq_rnn.data.corpus import load_split
from seq2seq_rnn.errors import ConfigError
from seq2seq_rnn.inference.quantize import Int8GRUCell, Int8LSTMCell, apply_quantization, describe, quantize_int8
from seq2seq_rnn.inference.translator import Translator
from seq2seq_rnn.model import Seq2Seq
from tests.helpers import load_layernorm_cell, run_cli


def model(cell: str, seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    cfg = ModelConfig.model_validate(
        {
            "encoder": {"cell": cell, "embedding_size": 16, "hidden_size": 24, "layers": 2},
            "decoder": {"cell": cell, "embedding_size": 24, "hidden_size": 24, "layers": 2, "input_feeding": True},
        }
    )
    return Seq2Seq.from_config(cfg, 40, 30).eval()


@pytest.mark.parametrize(("cell", "int8_cls"), [("lstm", Int8LSTMCell), ("gru", Int8GRUCell), ("rnn", None)])
def test_builtin_cells_and_linears_become_int8(cell: str, int8_cls: type | None) -> None:
    fp32 = model(cell)
    q = quantize_int8(fp32)
    counts = describe(q)
    assert counts["fp32_linear"] == 0 and counts["int8_linear"] == describe(fp32)["fp32_linear"] > 0
    cells = [m for m in q.modules() if isinstance(m, RecurrentCell)]
    if int8_cls is None:  # no dynamic int8 tanh-RNN kernel: stays fp32
        assert counts["int8_cells"] == 0
    else:
        assert all(isinstance(c, int8_cls) for c in cells) and counts["int8_cells"] == len(cells)
    assert describe(fp32)["int8_cells"] == 0  # the original is left alone
    src = torch.randint(4, 40, (3, 6))
    lengths = torch.tensor([6, 4, 2])
    src[1, 4:] = 0
    src[2, 2:] = 0
    tgt = torch.randint(4, 30, (3, 5))
    with torch.no_grad():  # the initial decoder state goes through the (int8) bridge, not around it
        for a, b in zip(q.encode(src, lengths)[1], fp32.encode(src, lengths)[1], strict=True):
            assert (a - b).norm() <= 0.05 * b.norm()
        want, got = fp32(src, lengths, tgt), q(src, lengths, tgt)  # the fused (encoder) and step (decoder) paths
    assert torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0) > 0.98


def test_plugin_cells_stay_fp32_unless_they_opt_in() -> None:
    plugin = load_layernorm_cell()

    class OptingIn(plugin):
        def quantize_int8(self) -> nn.Module:
            return Int8LSTMCell(_builtin_lstm(self.input_size, self.hidden_size))

    holder = nn.Module()
    holder.plain = plugin(8, 8)
    holder.opting = OptingIn(8, 8)
    holder.proj = nn.Linear(8, 8)
    q = quantize_int8(holder)
    assert type(q.plain) is plugin  # untouched, and so are the Linear layers inside it
    assert not any(isinstance(m, qd.Linear) for m in q.plain.modules())
    assert isinstance(q.opting, Int8LSTMCell)
    assert isinstance(q.proj, qd.Linear)


def _builtin_lstm(input_size: int, hidden_size: int) -> nn.Module:
    from seq2seq_rnn.cells.builtin import LSTMCell

    return LSTMCell(input_size, hidden_size)


def test_int8_needs_the_cpu() -> None:
    with pytest.raises(ConfigError, match="--device cpu"):
        apply_quantization(model("lstm"), "int8", torch.device("meta"))


def test_int8_translate_runs_and_mostly_equals_fp32(tiny_run: Path) -> None:
    sources = load_split(Translator.load(tiny_run).recipe.data, "validation").sources[:20]
    fp32 = Translator.load(tiny_run, device="cpu").translate(sources, beam_size=3)
    int8 = Translator.load(tiny_run, device="cpu", quantize="int8")
    assert describe(int8.model)["int8_linear"] > 0
    got = int8.translate(sources, beam_size=3)
    assert len(got) == len(fp32)
    assert sum(a == b for a, b in zip(got, fp32, strict=True)) >= 0.6 * len(fp32)
    # the CLI flag reaches the same path
    proc = run_cli("translate", tiny_run, "--quantize", "int8", "--beam-size", "3", stdin="\n".join(sources).encode())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == got


def test_export_int8_torchscript(tiny_run: Path, tmp_path: Path) -> None:
    proc = run_cli("export", tiny_run, "--quantize", "int8", "--output", tmp_path / "int8")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "int8" / "config.json").read_text())["quantize"] == "int8"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch >= 2.10
        step = torch.jit.load(str(tmp_path / "int8" / "decoder_step.pt"))
    assert "quantized" in str(step.inlined_graph)
    refused = run_cli("export", tiny_run, "--quantize", "int8", "--format", "onnx", "--output", tmp_path / "x")
    assert refused.returncode == 2 and "torchscript only" in refused.stderr
