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
    """Training steps of the recipe's model; FLOPs counted on the step-by-step
    path (same math, countable matmuls), time measured on the fused path."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from seq2seq_rnn.config import load_recipe
    from seq2seq_rnn.model import Seq2Seq
    from seq2seq_rnn.train import token_loss

    recipe = load_recipe(args.recipe)
    vocab = recipe.tokenizer.vocab_size
    dev = _device()
    model = Seq2Seq.from_config(recipe.model, vocab, vocab).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = _synthetic_batch(recipe.train.batch_tokens, vocab, dev)

    def step() -> None:
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)
        loss, n = token_loss(logits, batch.tgt_out, 0.1)
        (loss / n).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    model.set_fused(False)
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    model.set_fused(True)
    seconds = _timeit(step, args.repeats)
    return {
        "batch_sentences": batch.size,
        "target_tokens": batch.ntokens,
        "step_seconds": seconds,
        "tokens_per_sec": batch.ntokens / seconds,
        "gflop_per_step": flops / 1e9,
        "achieved_gflops": flops / seconds / 1e9,
    }


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
    return out


def _bench_plugin() -> Any:
    sys.path.insert(0, str(ROOT / "tools"))
    import bench_plugin

    return bench_plugin


def _plain_decode(model: Any, ids: list[list[int]], decode: Any, device: Any) -> list[list[Any]]:
    """Yesterday's corpus decoding: the same length-sorted batches, the plain searches."""
    from seq2seq_rnn.data.batching import collate, sentence_batches
    from seq2seq_rnn.data.tokenizer import BOS_ID, EOS_ID
    from seq2seq_rnn.search import max_lengths
    from seq2seq_rnn.search_reference import plain_beam_search, plain_greedy_search

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
    today's at fp32 and int8; BLEU of each, identical lines, the matmul peak in the same process.

    ``beam5_peak_gflop_seconds`` = beam-5 seconds × peak GFLOP/s, the machine-independent
    figure of issue #12 (target ≤ 1,000 for 1,000 sentences)."""
    from seq2seq_rnn.data.corpus import load_split
    from seq2seq_rnn.decoding import decode_ids, encode_sources, settings
    from seq2seq_rnn.metrics import score
    from seq2seq_rnn.quantize import quantize_int8
    from seq2seq_rnn.translator import Translator

    if not (Path(args.run_dir) / "recipe.yaml").is_file():
        return {"skipped": f"no trained run at {args.run_dir}"}
    peak = bench_peak(args)["peak_gflops"]
    translator = Translator.load(args.run_dir, args.checkpoint, "cpu" if _device().type == "cpu" else "auto")
    recipe, tok, dev = translator.recipe, translator.tokenizer, translator.device
    corpus = load_split(recipe.data, "test")
    sources, refs = corpus.sources[: args.decode_sentences or None], corpus.targets[: args.decode_sentences or None]
    ids = encode_sources(tok, sources, recipe.max_source_length)
    models = {"fp32": translator.model}
    if dev.type == "cpu":
        models["int8"] = quantize_int8(translator.model)
    out: dict[str, Any] = {"sentences": len(sources), "checkpoint": args.checkpoint, "peak_gflops": peak}
    texts: dict[str, list[str]] = {}
    runs = [
        (s, beam, w) for beam in (1, 5) for s, w in (("old", "fp32"), ("new", "fp32"), ("new", "int8")) if w in models
    ]
    for search, beam, weights in runs:
        decode = settings(recipe.decode, beam_size=beam, batch_size=64)
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
        if "int8" in models:
            fp, q = f"new_beam{beam}_fp32", f"new_beam{beam}_int8"
            out[f"beam{beam}_fp32_over_int8"] = out[f"{fp}_seconds"] / out[f"{q}_seconds"]
            out[f"beam{beam}_int8_bleu_change"] = out[f"{q}_bleu"] - out[f"{fp}_bleu"]
            out[f"beam{beam}_identical_fp32_int8"] = sum(a == b for a, b in zip(texts[fp], texts[q], strict=True))
    for search in ("old", "new"):
        out[f"{search}_beam5_fp32_peak_gflop_seconds"] = out[f"{search}_beam5_fp32_seconds"] * peak
    return out


def bench_ray_translate(args: argparse.Namespace) -> dict[str, Any]:
    """translate --ray over the test split's source file with 1 and 2 actors (local cluster), sentences/s."""
    import tempfile

    from seq2seq_rnn.data.corpus import load_split
    from seq2seq_rnn.integrations.ray import translate_files
    from seq2seq_rnn.translator import Translator

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
