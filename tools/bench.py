#!/usr/bin/env python
"""Benchmarks: training throughput against the machine's matmul peak, plugin vs
fused cells, decoding speed, and peak memory — as ratios measured in one run.

    python tools/bench.py [--recipe recipes/multi30k_de_en_lstm.yaml] [--run-dir runs/multi30k_de_en_lstm]
                          [--json bench.json] [--only peak,train,cells,decode,data]

Each benchmark runs in its own subprocess so its peak memory (max RSS, or CUDA
max allocated) is its own. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ helpers
def _timeit(fn: Any, repeats: int, warmup: int = 2) -> float:
    """Median seconds per call."""
    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _device() -> Any:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ------------------------------------------------------------------ benchmarks
def bench_peak(args: argparse.Namespace) -> dict[str, Any]:
    """Dense fp32 matmul GFLOP/s through each library path torch uses here."""
    import torch

    m, k, n = 4096, 1024, 1024
    dev = _device()
    a, b = torch.randn(m, k, device=dev), torch.randn(k, n, device=dev)
    out = {"mm_gflops": 2 * m * k * n / _timeit(lambda: torch.mm(a, b), 10) / 1e9}
    if dev.type == "cpu" and torch.backends.mkldnn.is_available():
        am, bm = a.to_mkldnn(), b.t().contiguous().to_mkldnn()
        out["onednn_gflops"] = 2 * m * k * n / _timeit(lambda: torch._C._nn.mkldnn_linear(am, bm, None), 10) / 1e9
    out["peak_gflops"] = max(out.values())
    return out


def _synthetic_batch(batch_tokens: int, vocab: int, dev: Any) -> Any:
    """A Multi30k-shaped batch: lengths around 17 ± 5 subwords."""
    import torch

    from seq2seq_rnn.data.batching import collate

    g = torch.Generator().manual_seed(0)
    n = max(1, batch_tokens // 19)
    lengths = (torch.randn(n, generator=g) * 4 + 17).clamp(5, 40).long().tolist()
    src = [torch.randint(4, vocab, (ln,), generator=g).tolist() for ln in lengths]
    tgt = [torch.randint(4, vocab, (ln + 1,), generator=g).tolist() for ln in lengths]
    return collate(src, tgt).to(dev)


def bench_train(args: argparse.Namespace) -> dict[str, Any]:
    """Training steps of the recipe's model in fp32 and under bf16 autocast (fp32 master weights),
    interleaved in one process so that both see the same machine; FLOPs counted on the step-by-step
    path (same math, countable matmuls), time measured on the fused path, as train.py's step runs it."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from seq2seq_rnn.config import load_recipe
    from seq2seq_rnn.data.tokenizer import PAD_ID
    from seq2seq_rnn.model import Seq2Seq
    from seq2seq_rnn.precision import fast_bf16
    from seq2seq_rnn.training import token_loss

    recipe = load_recipe(args.recipe)
    vocab = recipe.tokenizer.vocab_size
    dev = _device()
    model = Seq2Seq.from_config(recipe.model, vocab, vocab).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = _synthetic_batch(recipe.train.batch_tokens, vocab, dev)
    keep = batch.tgt_out != PAD_ID

    def step(precision: str) -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(batch.src, batch.src_lengths, batch.tgt_in, keep)
        loss, n = token_loss(logits, batch.tgt_out[keep], 0.1)
        (loss / n).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    model.set_fused(False)
    with FlopCounterMode(display=False) as counter:
        step("fp32")
    flops = counter.get_total_flops()
    model.set_fused(True)
    precisions = ["fp32", "bf16"] if dev.type == "cuda" or fast_bf16(dev) else ["fp32"]
    for precision in precisions:  # warm-up
        step(precision)
    times: dict[str, list[float]] = {p: [] for p in precisions}
    cpu: dict[str, list[float]] = {p: [] for p in precisions}  # process CPU time: steadier on a shared machine
    for _ in range(args.repeats):  # interleaved: a busy spell slows both
        for precision in precisions:
            start, start_cpu = time.perf_counter(), time.process_time()
            step(precision)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times[precision].append(time.perf_counter() - start)
            cpu[precision].append(time.process_time() - start_cpu)
    out: dict[str, Any] = {"batch_sentences": batch.size, "target_tokens": batch.ntokens, "gflop_per_step": flops / 1e9}
    for precision, samples in times.items():
        seconds = sorted(samples)[len(samples) // 2]
        suffix = "" if precision == "fp32" else f"_{precision}"
        out[f"step_seconds{suffix}"] = seconds
        out[f"tokens_per_sec{suffix}"] = batch.ntokens / seconds
        out[f"achieved_gflops{suffix}"] = flops / seconds / 1e9
        out[f"step_cpu_seconds{suffix}"] = sorted(cpu[precision])[len(samples) // 2]
    if "bf16" in times:
        out["bf16_over_fp32"] = out["tokens_per_sec_bf16"] / out["tokens_per_sec"]
        out["bf16_over_fp32_cpu_time"] = out["step_cpu_seconds"] / out["step_cpu_seconds_bf16"]
    return out


def bench_cells(args: argparse.Namespace) -> dict[str, Any]:
    """A plain-PyTorch plugin-style LSTM (one step per call) vs the fused built-in."""
    import torch

    from seq2seq_rnn.cells.builtin import LSTMCell

    sys.path.insert(0, str(ROOT / "plugins" / "seq2seq-rnn-layernorm"))
    from seq2seq_rnn_layernorm.cell import LayerNormLSTMCell

    from seq2seq_rnn.cells.base import RecurrentCell, set_hoisting

    class PlainLSTMCell(RecurrentCell):
        """An LSTM as a plugin author writes it: one step, plain PyTorch, no tricks."""

        def __init__(self, input_size: int, hidden_size: int) -> None:
            super().__init__(input_size, hidden_size)
            self.x2g = torch.nn.Linear(input_size, 4 * hidden_size)
            self.h2g = torch.nn.Linear(hidden_size, 4 * hidden_size, bias=False)

        def initial_state(self, batch_size: int, device: Any, dtype: Any) -> tuple[Any, ...]:
            zeros = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
            return zeros, zeros.clone()

        def forward(self, x: Any, state: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
            i, f, g, o = (self.x2g(x) + self.h2g(state[0])).chunk(4, dim=-1)
            c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            return h, (h, c)

    dev = _device()
    b, t, h = 64, 30, args.cell_hidden
    x = torch.randn(b, t, h, device=dev, requires_grad=True)
    lengths = torch.full((b,), t)
    out: dict[str, Any] = {"shape": f"B={b} T={t} I=H={h}"}
    cells = (
        ("builtin_lstm", LSTMCell(h, h), True),
        ("plugin_plain_lstm", PlainLSTMCell(h, h), True),
        ("plugin_plain_lstm_no_hoisting", PlainLSTMCell(h, h), False),
        ("plugin_layernorm_lstm", LayerNormLSTMCell(h, h), True),
    )
    for name, cell, hoisting in cells:
        set_hoisting(hoisting)
        cell = cell.to(dev)
        state = cell.initial_state(b, dev, x.dtype)

        def run(cell: Any = cell, state: Any = state) -> None:
            y, _ = cell.forward_sequence(x, state, lengths)
            y.sum().backward()

        out[f"{name}_seconds"] = _timeit(run, args.repeats)
    set_hoisting(True)
    for name, *_ in cells[1:]:
        out[f"{name}_over_builtin"] = out[f"{name}_seconds"] / out["builtin_lstm_seconds"]
    out.update(_bench_plugin().run_parts(args))  # issue 23: fp32/bf16, before/after, whole model, beam 5
    out.update(bench_parallel_cells(args))
    return out


# ------------------------------------------------ parallel cells (issue 19)
# Self-contained: called at the end of bench_cells (--only cells). Best run with --threads 1.
PARALLEL_CELLS = ("mingru", "minlstm", "sru", "ssru")


def _interleaved(fns: dict[str, Any], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each function, timed in rounds that visit every function once:
    on a shared machine a change of load then hits all of them alike, not only the last."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def _scan_methods() -> dict[str, Any]:
    """The alternatives to the sequential loop of seq2seq_rnn/cells/scan.py, kept here to back its choice."""
    import torch

    def assoc(a: Any, b: Any, h0: Any) -> Any:  # Hillis–Steele: log2(T) passes over (B, T, H)
        k = 1
        while k < a.size(1):
            b = torch.cat([b[:, :k], torch.addcmul(b[:, k:], a[:, k:], b[:, :-k])], 1)
            a = torch.cat([a[:, :k], a[:, k:] * a[:, :-k]], 1)
            k *= 2
        return torch.addcmul(b, a, h0.unsqueeze(1))

    def log_space(a: Any, b: Any, h0: Any) -> Any:  # Heinsen (2023), signed b split in two
        tiny = 1e-30
        log_a = torch.cumsum(torch.log(a.clamp_min(tiny)), 1)
        pos = torch.logcumsumexp(torch.log(b.clamp_min(tiny)) - log_a, 1)
        neg = torch.logcumsumexp(torch.log((-b).clamp_min(tiny)) - log_a, 1)
        return torch.exp(log_a + pos) - torch.exp(log_a + neg) + torch.exp(log_a) * h0.unsqueeze(1)

    return {"associative": assoc, "log_space": log_space}


def _bench_scans(args: argparse.Namespace, dev: Any) -> dict[str, Any]:
    """Forward+backward of h_t = a_t h_{t-1} + b_t (B=64, H=cell_hidden) at T=30 and T=100, each method."""
    import torch

    from seq2seq_rnn.cells.scan import linear_recurrence

    out: dict[str, Any] = {}
    methods = {"loop": linear_recurrence, **_scan_methods()}
    for steps in (30, 100):
        k_a = torch.randn(64, steps, args.cell_hidden, device=dev, requires_grad=True)
        b = torch.randn(64, steps, args.cell_hidden, device=dev, requires_grad=True)
        h0 = torch.randn(64, args.cell_hidden, device=dev, requires_grad=True)
        reference = linear_recurrence(torch.sigmoid(k_a.double()), b.double(), h0.double())
        for name, scan in methods.items():

            def run(scan: Any = scan, k_a: Any = k_a, b: Any = b, h0: Any = h0) -> None:
                scan(torch.sigmoid(k_a), b, h0).sum().backward()

            out[f"scan_{name}_T{steps}_seconds"] = _timeit(run, args.repeats)
            got = scan(torch.sigmoid(k_a.double()), b.double(), h0.double())
            out[f"scan_{name}_T{steps}_max_error_fp64"] = float((got - reference).detach().abs().max())
        for name in methods:
            if name != "loop":
                out[f"scan_{name}_T{steps}_over_loop"] = (
                    out[f"scan_{name}_T{steps}_seconds"] / out[f"scan_loop_T{steps}_seconds"]
                )
    return out


def _bench_parallel_layers(args: argparse.Namespace, dev: Any) -> dict[str, Any]:
    """One layer, B=64 T=30 I=H: each parallel cell's sequence path and its own step loop vs fused LSTM."""
    import torch

    from seq2seq_rnn.cells import build_cell
    from seq2seq_rnn.cells.base import step_loop

    b, t, h = 64, 30, args.cell_hidden
    x = torch.randn(b, t, h, device=dev, requires_grad=True)
    lengths = torch.full((b,), t)
    fns: dict[str, Any] = {}
    for name in ("lstm", *PARALLEL_CELLS):
        cell = build_cell(name, h, h, {}, "bench").to(dev)
        state = cell.initial_state(b, dev, x.dtype)
        paths = {"parallel": cell.forward_sequence}
        if name != "lstm":
            paths["step"] = lambda x, s, n, c=cell: step_loop(c, x, s, n)
        for path, fn in paths.items():

            def run(fn: Any = fn, state: Any = state) -> None:
                y, _ = fn(x, state, lengths)
                y.sum().backward()

            fns[f"{name}_{path}"] = run
    seconds = _interleaved(fns, args.repeats)
    out: dict[str, Any] = {"layer_builtin_lstm_fused_seconds": seconds.pop("lstm_parallel")}
    out.update({f"layer_{key}_seconds": value for key, value in seconds.items()})
    for name in PARALLEL_CELLS:
        out[f"layer_{name}_step_over_parallel"] = seconds[f"{name}_step"] / seconds[f"{name}_parallel"]
        out[f"layer_{name}_lstm_over_parallel"] = out["layer_builtin_lstm_fused_seconds"] / seconds[f"{name}_parallel"]
    return out


def _bench_parallel_models(args: argparse.Namespace, dev: Any) -> dict[str, Any]:
    """Training tokens/s of the default recipe's model with each cell substituted (encoder and decoder),
    and of the SSRU recipe's model (biLSTM encoder, SSRU decoder); and beam-5 decoding, LSTM vs SSRU decoder."""
    import torch

    from seq2seq_rnn.config import load_recipe
    from seq2seq_rnn.data.tokenizer import BOS_ID, EOS_ID
    from seq2seq_rnn.inference.search import beam_search, max_lengths
    from seq2seq_rnn.model import Seq2Seq
    from seq2seq_rnn.training import token_loss

    recipe = load_recipe(args.recipe)
    vocab = recipe.tokenizer.vocab_size
    batch = _synthetic_batch(recipe.train.batch_tokens, vocab, dev)
    variants = {name: (name, name) for name in ("lstm", *PARALLEL_CELLS)}
    variants["lstm_encoder_ssru_decoder"] = ("lstm", "ssru")
    out: dict[str, Any] = {"train_target_tokens": batch.ntokens}
    models, steps = {}, {}
    for label, (enc, dec) in variants.items():
        model_cfg = recipe.model.model_copy(
            update={
                "encoder": recipe.model.encoder.model_copy(update={"cell": enc}),
                "decoder": recipe.model.decoder.model_copy(update={"cell": dec, "input_feeding": False}),
            }
        )
        torch.manual_seed(0)
        model = Seq2Seq.from_config(model_cfg, vocab, vocab).to(dev).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step(model: Any = model, opt: Any = opt) -> None:
            logits = model(batch.src, batch.src_lengths, batch.tgt_in)
            loss, n = token_loss(logits, batch.tgt_out, 0.1)
            (loss / n).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        models[label], steps[label] = model, step
    for label, seconds in _interleaved(steps, args.repeats).items():
        out[f"train_{label}_tokens_per_sec"] = batch.ntokens / seconds
    for label in variants:
        if label != "lstm":
            out[f"train_{label}_over_lstm"] = out[f"train_{label}_tokens_per_sec"] / out["train_lstm_tokens_per_sec"]
    # beam 5 over 64 sentences; EOS suppressed, so both models decode every hypothesis to the same cap
    src, lengths = batch.src[:64], batch.src_lengths[:64]
    caps = max_lengths(lengths, 1.0, 5)
    decoders = {}
    for label in ("lstm", "lstm_encoder_ssru_decoder"):
        model = models[label].eval()
        with torch.no_grad():
            model.decoder.output.bias[EOS_ID] = -1e4

        def decode(model: Any = model) -> None:
            with torch.no_grad():
                beam_search(model, src, lengths, caps=caps, bos=BOS_ID, eos=EOS_ID, beam_size=5)

        decoders[label] = decode
    for label, seconds in _interleaved(decoders, max(1, args.repeats // 2)).items():
        out[f"beam5_{label}_seconds"] = seconds
    out["beam5_lstm_over_ssru_decoder"] = out["beam5_lstm_seconds"] / out["beam5_lstm_encoder_ssru_decoder_seconds"]
    return out


def bench_parallel_cells(args: argparse.Namespace) -> dict[str, Any]:
    """Issue 19's evidence; goals: sequence path ≥ 3× its step loop and ≥ 1.5× the fused LSTM layer
    (minGRU, SSRU); an all-parallel model ≥ 2× the LSTM model's training tokens/s; beam 5 with an
    SSRU decoder ≥ 1.5× faster than with the LSTM decoder."""
    dev = _device()
    out = {**_bench_scans(args, dev), **_bench_parallel_layers(args, dev)}
    out.update(_bench_parallel_models(args, dev))
    out["goal_step_over_parallel_3x"] = all(out[f"layer_{c}_step_over_parallel"] >= 3 for c in ("mingru", "ssru"))
    out["goal_lstm_over_parallel_1_5x"] = all(out[f"layer_{c}_lstm_over_parallel"] >= 1.5 for c in ("mingru", "ssru"))
    out["goal_all_parallel_model_2x"] = out["train_mingru_over_lstm"] >= 2  # the all-parallel recipe
    out["goal_ssru_decoder_beam5_1_5x"] = out["beam5_lstm_over_ssru_decoder"] >= 1.5
    return out


def _bench_plugin() -> Any:
    sys.path.insert(0, str(ROOT / "tools"))
    import bench_plugin

    return bench_plugin


def _plain_decode(model: Any, ids: list[list[int]], decode: Any, device: Any) -> list[list[Any]]:
    """Yesterday's corpus decoding: the same length-sorted batches, the plain searches."""
    from seq2seq_rnn.data.batching import collate, sentence_batches
    from seq2seq_rnn.data.tokenizer import BOS_ID, EOS_ID
    from seq2seq_rnn.inference.search import max_lengths

    if str(ROOT) not in sys.path:  # the reference searches live with the tests that hold search to them
        sys.path.insert(0, str(ROOT))
    from tests.search_reference import plain_beam_search, plain_greedy_search

    results: list[list[Any]] = [[] for _ in ids]
    todo = [i for i, seq in enumerate(ids) if seq]
    for chunk in sentence_batches([len(ids[i]) for i in todo], decode.batch_size):
        index = [todo[j] for j in chunk]
        batch = collate([ids[i] for i in index], None).to(device)
        caps = max_lengths(batch.src_lengths, decode.max_length_ratio, decode.max_length_offset)
        if decode.beam_size == 1:
            hyps = [[h] for h in plain_greedy_search(model, batch.src, batch.src_lengths, caps, BOS_ID, EOS_ID)]
        else:
            hyps = plain_beam_search(
                model, batch.src, batch.src_lengths, caps, BOS_ID, EOS_ID, decode.beam_size, decode.length_penalty
            )
        for i, h in zip(index, hyps, strict=True):
            results[i] = h
    return results


def bench_decode(args: argparse.Namespace) -> dict[str, Any]:
    """test split of a trained run, batch 64: yesterday's greedy and beam 5 (plain search, fp32) and
    today's at fp32, int8, bf16 and int8 with a bf16 output layer (bf16 where the device has fast
    bf16); BLEU of each, identical lines, the matmul peak in the same process.

    ``beam5_peak_gflop_seconds`` = beam-5 seconds × peak GFLOP/s, the machine-independent
    figure of issue #12 (target ≤ 1,000 for 1,000 sentences)."""
    from seq2seq_rnn.data.corpus import load_split
    from seq2seq_rnn.inference.decoding import decode_ids, encode_sources, with_overrides
    from seq2seq_rnn.inference.quantize import apply_weights
    from seq2seq_rnn.inference.translator import Translator
    from seq2seq_rnn.metrics import score
    from seq2seq_rnn.precision import fast_bf16

    if not (Path(args.run_dir) / "recipe.yaml").is_file():
        return {"skipped": f"no trained run at {args.run_dir}"}
    peak = bench_peak(args)["peak_gflops"]
    translator = Translator.load(args.run_dir, args.checkpoint, "cpu" if _device().type == "cpu" else "auto")
    recipe, tok, dev = translator.recipe, translator.tokenizer, translator.device
    corpus = load_split(recipe.data, "test")
    sources, refs = corpus.sources[: args.decode_sentences or None], corpus.targets[: args.decode_sentences or None]
    ids = encode_sources(tok, sources, recipe.max_source_length)
    models = {"fp32": translator.model}  # the weights as Translator.load(..., quantize, precision) makes them
    if dev.type == "cpu":
        models["int8"] = apply_weights(translator.model, "int8", "fp32", dev)[0]
    if dev.type == "cuda" or fast_bf16(dev):
        models["bf16"] = apply_weights(translator.model, "none", "bf16", dev)[0]
        if dev.type == "cpu":
            models["int8_bf16"] = apply_weights(translator.model, "int8", "bf16", dev)[0]  # bf16 output layer
    out: dict[str, Any] = {"sentences": len(sources), "checkpoint": args.checkpoint, "peak_gflops": peak}
    texts: dict[str, list[str]] = {}
    runs = [(s, beam, w) for beam in (1, 5) for s, w in [("old", "fp32")] + [("new", w) for w in models]]
    for search, beam, weights in runs:
        decode = with_overrides(recipe.decode, beam_size=beam, batch_size=64)
        fn = _plain_decode if search == "old" else decode_ids
        start = time.perf_counter()
        found = fn(models[weights], ids, decode, dev)
        seconds = time.perf_counter() - start
        name = f"{search}_beam{beam}_{weights}"
        texts[name] = tok.decode_target([hyps[0].tokens if hyps else [] for hyps in found])
        bleu = score(texts[name], refs, recipe.evaluate.tokenize, recipe.evaluate.lowercase).bleu
        out[f"{name}_seconds"] = seconds
        out[f"{name}_bleu"] = bleu
        print(f"  {name}: {seconds:.2f} s, BLEU {bleu:.2f}", file=sys.stderr, flush=True)
    for beam in (1, 5):
        old, new = f"old_beam{beam}_fp32", f"new_beam{beam}_fp32"
        out[f"beam{beam}_old_over_new"] = out[f"{old}_seconds"] / out[f"{new}_seconds"]
        out[f"beam{beam}_identical_old_new"] = sum(a == b for a, b in zip(texts[old], texts[new], strict=True))
        for weights in models:
            if weights == "fp32":
                continue
            fp, q = f"new_beam{beam}_fp32", f"new_beam{beam}_{weights}"
            out[f"beam{beam}_fp32_over_{weights}"] = out[f"{fp}_seconds"] / out[f"{q}_seconds"]
            out[f"beam{beam}_{weights}_bleu_change"] = out[f"{q}_bleu"] - out[f"{fp}_bleu"]
            out[f"beam{beam}_identical_fp32_{weights}"] = sum(a == b for a, b in zip(texts[fp], texts[q], strict=True))
    out["old_beam5_fp32_peak_gflop_seconds"] = out["old_beam5_fp32_seconds"] * peak
    for weights in models:
        out[f"new_beam5_{weights}_peak_gflop_seconds"] = out[f"new_beam5_{weights}_seconds"] * peak
    return out


def bench_ray_translate(args: argparse.Namespace) -> dict[str, Any]:
    """translate --ray over the test split's source file with 1 and 2 actors (local cluster), sentences/s."""
    import tempfile

    from seq2seq_rnn.data.corpus import load_split
    from seq2seq_rnn.inference.translator import Translator
    from seq2seq_rnn.integrations.ray import translate_files

    if not (Path(args.run_dir) / "recipe.yaml").is_file():
        return {"skipped": f"no trained run at {args.run_dir}"}
    import ray

    sources = load_split(Translator.load(args.run_dir).recipe.data, "test").sources[: args.decode_sentences or None]
    out: dict[str, Any] = {"sentences": len(sources), "beam_size": 5}
    with tempfile.TemporaryDirectory(prefix="r", dir="/tmp") as tmp:
        src = Path(tmp) / "test.src"
        src.write_text("\n".join(sources) + "\n", encoding="utf-8")
        ray.init(num_cpus=os.cpu_count(), _temp_dir=str(Path(tmp) / "ray"), logging_level="ERROR")
        try:
            for actors in (1, 2):
                start = time.perf_counter()
                translate_files(args.run_dir, [src], Path(tmp) / f"out{actors}", actors=actors, beam_size=5, threads=1)
                seconds = time.perf_counter() - start
                out[f"actors{actors}_seconds"] = seconds
                out[f"actors{actors}_sent_per_sec"] = len(sources) / seconds
        finally:
            ray.shutdown()
    return out


def bench_data(args: argparse.Namespace) -> dict[str, Any]:
    """Data preparation at 30k/300k/3M pairs: cold, warm (cache hit), 2 Ray workers (tools/bench_data.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_data as data

    sizes = [data.parse_size(s) for s in args.data_sizes.split(",") if s]
    ray_sizes = [data.parse_size(s) for s in args.data_ray_sizes.split(",") if s]
    return data.bench(sizes, Path(args.data_work), args.recipe, ray_sizes, args.threads or 2)


BENCHES = {
    "peak": bench_peak,
    "train": bench_train,
    "cells": bench_cells,
    "decode": bench_decode,
    "data": bench_data,
    "ray_translate": bench_ray_translate,
}
# On request: data (3M-pair corpora, ~15 min and ~2 GB of disk) and ray_translate (--only data,ray_translate)
DEFAULT = ["peak", "train", "cells", "decode"]


# ------------------------------------------------------------------ driver
def _run_one(name: str, argv: list[str]) -> dict[str, Any]:
    """Run one benchmark in a subprocess; add its peak memory."""
    proc = subprocess.Popen([sys.executable, __file__, "--child", name, *argv], stdout=subprocess.PIPE, text=True)
    output = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        return {"error": f"exit status {proc.returncode}"}
    result = json.loads(output.strip().splitlines()[-1])
    result.setdefault("peak_rss_mb", usage.ru_maxrss / 1024)
    return result


def _child(name: str, args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    result = BENCHES[name](args)
    if torch.cuda.is_available():
        result["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(result))


def _print_table(results: dict[str, dict[str, Any]]) -> None:
    for name, values in results.items():
        print(f"[{name}]")
        for key, value in values.items():
            print(f"  {key:<36} {value:.4g}" if isinstance(value, float) else f"  {key:<36} {value}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "multi30k_de_en_lstm.yaml"))
    parser.add_argument("--run-dir", default=str(ROOT / "runs" / "multi30k_de_en_lstm"))
    parser.add_argument("--json", default="bench.json")
    parser.add_argument("--only", default=",".join(DEFAULT), help=f"comma-separated: {', '.join(BENCHES)}")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    parser.add_argument("--cell-hidden", type=int, default=512)
    parser.add_argument("--checkpoint", default="best", help="decode: best, last or a path")
    parser.add_argument("--decode-sentences", type=int, default=0, help="decode: first N test sentences; 0 = all")
    parser.add_argument("--data-sizes", default="30k,300k,3M", help="--only data: corpus sizes in pairs")
    parser.add_argument("--data-ray-sizes", default="30k,300k", help="--only data: sizes with a 2-worker Ray run")
    parser.add_argument("--data-work", default=str(ROOT / "runs" / "bench-data"), help="--only data: scratch folder")
    _bench_plugin().add_arguments(parser)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.child:
        _child(args.child, args)
        return 0
    argv = [a for a in sys.argv[1:]]
    results = {name: _run_one(name, argv) for name in args.only.split(",")}
    if "peak" in results and "train" in results and "achieved_gflops" in results["train"]:
        results["train"]["fraction_of_peak"] = results["train"]["achieved_gflops"] / results["peak"]["peak_gflops"]
    import platform

    import torch

    results["machine"] = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    _print_table(results)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
