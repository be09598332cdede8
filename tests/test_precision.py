"""bf16 (issue 22): what ``auto`` picks, the fused pieces of the training step equal the plain ones,
a bf16 step runs for every cell, the run records its precision, and bf16 decoding stays near fp32."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from seq2seq_rnn import precision
from seq2seq_rnn.cells import CellFactory
from seq2seq_rnn.cells.builtin import GRUCell, LSTMCell, TanhRNNCell
from seq2seq_rnn.config import ModelConfig, load_recipe
from seq2seq_rnn.data.corpus import load_split
from seq2seq_rnn.inference.quantize import Bf16Linear, apply_weights, describe, quantize_int8
from seq2seq_rnn.inference.translator import Translator
from seq2seq_rnn.model import Seq2Seq
from seq2seq_rnn.nn.attention import AdditiveAttention
from seq2seq_rnn.nn.decoder import Decoder
from seq2seq_rnn.nn.encoder import Encoder
from seq2seq_rnn.nn.loss import smoothed_cross_entropy
from seq2seq_rnn.run.directory import read_metrics
from seq2seq_rnn.training import Trainer, token_loss
from tests.helpers import TINY, load_layernorm_cell, run_cli, small_overrides

CPU = torch.device("cpu")


# ------------------------------------------------------------------ auto
@pytest.mark.parametrize(
    ("flags", "want"),
    [
        ({"avx512f", "avx512_bf16"}, "bf16"),
        ({"amx_bf16", "amx_tile"}, "bf16"),
        ({"avx512f", "avx2"}, "fp32"),
        (set(), "fp32"),
    ],
)
def test_auto_picks_bf16_only_on_a_cpu_with_bf16_units(
    monkeypatch: pytest.MonkeyPatch, flags: set[str], want: str
) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    assert precision.resolve_precision("auto", CPU) == want
    assert precision.resolve_precision("bf16", CPU) == "bf16"  # as asked, whatever the CPU
    assert precision.resolve_precision("none", CPU) == "fp32"
    assert ("has" in precision.why("auto", CPU, want)) and want in ("bf16", "fp32")


def test_cpu_flags_are_read_from_cpuinfo() -> None:
    flags = precision.cpu_flags()
    if Path("/proc/cpuinfo").is_file():
        assert "fpu" in flags or "sse2" in flags  # every x86-64 CPU lists these


# ------------------------------------------------------------------ fused pieces = plain pieces
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_loss_equals_cross_entropy(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(150, 37, generator=g) * 3).to(dtype).requires_grad_()  # 150 rows: several blocks
    target = torch.randint(1, 37, (150,), generator=g)
    target[::7] = 0  # ignored rows
    want = F.cross_entropy(logits.float(), target, ignore_index=0, label_smoothing=0.1, reduction="sum")
    (want * 0.5).backward()
    want_grad, logits.grad = logits.grad.clone(), None
    got = smoothed_cross_entropy(logits, target, 0.1, 0)
    (got * 0.5).backward()
    assert got.dtype == torch.float32
    assert torch.allclose(got, want, rtol=1e-5)
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    assert logits.grad.dtype == dtype and torch.allclose(logits.grad.float(), want_grad.float(), atol=tol)
    assert logits.grad[::7].abs().max() == 0
    again = smoothed_cross_entropy(logits, target, 0.1, 0)
    again.backward(retain_graph=True)
    with pytest.raises(
        RuntimeError, match="modified by an inplace operation"
    ):  # its saved gradient was scaled in place
        again.backward()


@pytest.mark.parametrize("cls", [LSTMCell, GRUCell, TanhRNNCell])
def test_fused_outputs_equal_the_packed_sequence_path(cls: type) -> None:
    torch.manual_seed(0)
    cell = cls(6, 5)
    x = torch.randn(4, 7, 6, requires_grad=True)
    lengths = torch.tensor([7, 3, 5, 1])
    state = cell.initial_state(4, "cpu", torch.float32)
    want = cell.forward_sequence(x, state, lengths)[0]
    (want * torch.arange(5.0)).sum().backward()
    want_grad, x.grad = x.grad.clone(), None
    got = cell.forward_outputs(x, state, lengths)
    (got * torch.arange(5.0)).sum().backward()
    assert torch.allclose(got, want, atol=1e-6) and got[1, 3:].abs().max() == 0
    assert torch.allclose(x.grad, want_grad, atol=1e-6)


def test_fused_additive_attention_equals_autograd() -> None:
    torch.manual_seed(0)
    att = AdditiveAttention(query_size=6, memory_size=8, hidden_size=5)
    query, memory = torch.randn(3, 4, 6, requires_grad=True), torch.randn(3, 7, 8, requires_grad=True)
    weight = torch.randn(3, 4, 7)

    def grads(fused: bool) -> list[torch.Tensor]:
        att.zero_grad()
        query.grad = memory.grad = None
        keys = att.prepare(memory)
        if fused:
            scores = att.scores(query, keys)
        else:
            q = att.query_proj(query).unsqueeze(2)
            scores = att.energy(torch.tanh(q + keys.unsqueeze(1))).squeeze(-1)
        (scores * weight).sum().backward()
        return [scores.detach(), query.grad, memory.grad, *(p.grad for p in att.parameters())]

    for want, got in zip(grads(False), grads(True), strict=True):
        assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("input_feeding", [False, True])
def test_logits_at_kept_positions_equal_the_full_logits(input_feeding: bool) -> None:
    m = _model("lstm", input_feeding=input_feeding).eval()
    src, lengths, tgt = _batch()
    keep = tgt != 0
    with torch.no_grad():
        assert torch.allclose(m(src, lengths, tgt, keep), m(src, lengths, tgt)[keep], atol=1e-6)


# ------------------------------------------------------------------ a bf16 step for every cell
def _model(cell: str | CellFactory, input_feeding: bool = False) -> Seq2Seq:
    torch.manual_seed(0)
    cfg = ModelConfig.model_validate(
        {
            "encoder": {"embedding_size": 16, "hidden_size": 12, "layers": 2, "bidirectional": True, "dropout": 0.2},
            "decoder": {"embedding_size": 12, "hidden_size": 12, "layers": 2, "input_feeding": input_feeding},
            "attention": {"type": "bahdanau"},
        }
    )
    if isinstance(cell, str):
        cfg = ModelConfig.model_validate(
            {
                **cfg.model_dump(),
                "encoder": {**cfg.encoder.model_dump(), "cell": cell},
                "decoder": {**cfg.decoder.model_dump(), "cell": cell},
            }
        )
        return Seq2Seq.from_config(cfg, 40, 30)
    encoder = Encoder(vocab_size=40, config=cfg.encoder, cell=cell)
    decoder = Decoder(
        vocab_size=30, memory_size=encoder.output_size, config=cfg.decoder, attention=cfg.attention, cell=cell
    )
    model = Seq2Seq(encoder, decoder)
    model.reset_parameters(cfg.init)
    return model


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([6, 4, 2, 5])
    src = torch.randint(4, 40, (4, 6), generator=g) * (torch.arange(6) < lengths.unsqueeze(1))
    tgt = torch.randint(4, 30, (4, 5), generator=g)
    tgt[2, 3:] = 0
    return src, lengths, tgt


def _plugin_factory() -> CellFactory:
    cls = load_layernorm_cell()
    return CellFactory("layernorm_lstm", cls, "tests", {}, "model")


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "plugin"])
@pytest.mark.parametrize("input_feeding", [False, True])
def test_bf16_training_step_runs_for_every_cell(cell: str, input_feeding: bool) -> None:
    m = _model(_plugin_factory() if cell == "plugin" else cell, input_feeding).train()
    src, lengths, tgt = _batch()
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
    keep = tgt_out != 0
    losses = {}
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(3)  # the same dropout masks
        m.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            logits = m(src, lengths, tgt_in, keep)
        assert logits.dtype == dtype
        loss, n = token_loss(logits, tgt_out[keep], 0.1)
        (loss / n).backward()
        losses[dtype] = float(loss.detach())
        assert all(p.dtype == torch.float32 for p in m.parameters())  # fp32 master weights
        grads = [p.grad for p in m.parameters() if p.grad is not None]
        assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    assert abs(losses[torch.bfloat16] - losses[torch.float32]) <= 0.03 * losses[torch.float32]


# ------------------------------------------------------------------ the run records its precision
@pytest.mark.parametrize(("flags", "want"), [({"avx512_bf16"}, "bf16"), (set(), "fp32")])
def test_train_amp_auto_records_the_precision_it_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, flags: set[str], want: str
) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    overrides = small_overrides(train__max_steps=10, train__amp="auto", train__device="cpu")
    pairs = dict(overrides[i + 1].split("=", 1) for i in range(0, len(overrides), 2))
    recipe = load_recipe(TINY, overrides=[f"{k}={v}" for k, v in pairs.items()])
    assert recipe.train.amp == "auto"
    Trainer(recipe, tmp_path / "run", cache_dir=tmp_path / "cache").fit()
    rows = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert rows and all(r["precision"] == want for r in rows)


def test_tiny_run_records_fp32(tiny_run: Path) -> None:
    rows = [r for r in read_metrics(tiny_run / "metrics.jsonl") if "loss" in r]
    assert rows and all(r["precision"] == "fp32" for r in rows)


# ------------------------------------------------------------------ decoding
def test_bf16_decoding_agrees_with_fp32(tiny_run: Path) -> None:
    sources = load_split(Translator.load(tiny_run).recipe.data, "validation").sources[:20]
    fp32 = Translator.load(tiny_run, device="cpu")
    bf16 = Translator.load(tiny_run, device="cpu", precision="bf16")
    assert bf16.precision == "bf16" and fp32.precision == "fp32"
    assert all(p.dtype == torch.bfloat16 for p in bf16.model.parameters())
    assert all(p.dtype == torch.float32 for p in fp32.model.parameters())  # the fp32 model is left alone
    want_ids = fp32.translate_nbest(sources, beam_size=1)
    got_ids = bf16.translate_nbest(sources, beam_size=1)
    pairs = [(a[0].tokens, b[0].tokens) for a, b in zip(want_ids, got_ids, strict=True) if a and b]
    same = sum(x == y for a, b in pairs for x, y in zip(a, b, strict=False))
    assert same >= 0.8 * sum(len(a) for a, _ in pairs)  # token agreement, greedy
    beam = bf16.translate(sources, beam_size=3)
    assert sum(a == b for a, b in zip(beam, fp32.translate(sources, beam_size=3), strict=True)) >= 0.6 * len(beam)
    proc = run_cli("translate", tiny_run, "--precision", "bf16", "--beam-size", "3", stdin="\n".join(sources).encode())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == beam  # the CLI flag reaches the same path


def test_int8_with_bf16_output_layer(tiny_run: Path) -> None:
    sources = load_split(Translator.load(tiny_run).recipe.data, "validation").sources[:20]
    fp32 = Translator.load(tiny_run, device="cpu").translate(sources, beam_size=3)
    both = Translator.load(tiny_run, device="cpu", quantize="int8", precision="bf16")
    assert both.precision == "int8+bf16"
    assert isinstance(both.model.decoder.output, Bf16Linear) and describe(both.model)["int8_linear"] > 0
    got = both.translate(sources, beam_size=3)
    assert sum(a == b for a, b in zip(got, fp32, strict=True)) >= 0.6 * len(fp32)


def test_decoding_auto_follows_the_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    m = _model("lstm").eval()
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    assert apply_weights(m, "none", "auto", CPU)[1] == "bf16"
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset())
    model, used = apply_weights(m, "none", "auto", CPU)
    assert used == "fp32" and model is m


def test_evaluate_records_the_precision(tiny_run: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    proc = run_cli("evaluate", run, "--precision", "bf16", "--beam-size", "2")
    assert proc.returncode == 0, proc.stderr
    assert "bf16" in proc.stdout
    recorded = json.loads((run / "scores.json").read_text())
    assert any(v.get("provenance", v).get("precision") == "bf16" for v in _entries(recorded))


def _entries(scores: object) -> list[dict]:
    if isinstance(scores, dict):
        found = [scores] if "precision" in scores else []
        return found + [e for v in scores.values() for e in _entries(v)]
    if isinstance(scores, list):
        return [e for v in scores for e in _entries(v)]
    return []


def test_int8_keeps_working_without_deprecation_noise() -> None:
    """The deprecated torch.ao dynamic path stays (docs/precision.md says why): it must keep working,
    and its warnings must not reach users."""
    m = _model("lstm").eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = quantize_int8(m)
    src, lengths, tgt = _batch()
    with torch.no_grad():
        assert F.cosine_similarity(q(src, lengths, tgt).flatten(), m(src, lengths, tgt).flatten(), dim=0) > 0.98
