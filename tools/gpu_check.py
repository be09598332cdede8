#!/usr/bin/env python
"""The GPU check behind tools/gpu_check.sh: one short, fixed workload on a CUDA machine.

1. bf16 training of the default recipe for ``--steps`` steps: target tokens/s after
   warm-up, peak GPU memory, every logged loss finite, and whether PyTorch ran
   cuDNN's RNN kernels (``aten::_cudnn_rnn`` in a profiled training step);
2. beam-5 decoding of test_2016 with the trained weights: sentences/s (BLEU is
   recorded but means little after so few steps);
3. a 2-worker Ray Train run (1 GPU each) when 2 or more GPUs exist.

Writes ``--json`` (docs/bench-gpu.json). Without CUDA it says so and exits 0.
Nothing here asserts a speed; a failed check exits 1 with the JSON still written.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "multi30k_de_en_lstm.yaml"


def _overrides(steps: int) -> list[str]:
    return [
        "train.device=cuda",
        "train.amp=bf16",
        f"train.max_steps={steps}",
        f"train.validate_every={steps}",  # one validation, at the end
        "train.log_every=25",
        "train.max_minutes=0",
    ]


def check_training(work: Path, steps: int) -> dict[str, Any]:
    import torch

    from seq2seq_rnn.config import load_recipe
    from seq2seq_rnn.run.directory import RunDir
    from seq2seq_rnn.training import Trainer

    recipe = load_recipe(RECIPE, _overrides(steps))
    run = work / "train"
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    Trainer(recipe, run).fit()
    wall = time.perf_counter() - start
    rows = RunDir(run).read_metrics()
    logged = [r for r in rows if "tokens_per_sec" in r]
    after_warmup = logged[1:] or logged  # the first window includes CUDA/cuDNN start-up
    return {
        "steps": steps,
        "wall_seconds": round(wall, 1),
        "tokens_per_sec": round(sum(r["tokens_per_sec"] for r in after_warmup) / max(len(after_warmup), 1), 1),
        "peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
        "losses": [r["loss"] for r in logged],
        "loss_finite": bool(logged) and all(math.isfinite(r["loss"]) for r in logged),
        "val_bleu": next((r["val_bleu"] for r in reversed(rows) if "val_bleu" in r), None),
        "cudnn_rnn": cudnn_in_use(recipe),
        "run_dir": str(run),
    }


def cudnn_in_use(recipe: Any) -> dict[str, Any]:
    """Profile one bf16 training step of the model and look for cuDNN's RNN op."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from seq2seq_rnn.data.batching import collate
    from seq2seq_rnn.model import Seq2Seq

    vocab = recipe.tokenizer.vocab_size
    model = Seq2Seq.from_config(recipe.model, vocab, vocab).cuda().train()
    g = torch.Generator().manual_seed(0)
    src = [torch.randint(4, vocab, (int(n),), generator=g).tolist() for n in torch.randint(5, 30, (64,), generator=g)]
    batch = collate(src, src).to("cuda")
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(batch.src, batch.src_lengths, batch.tgt_in)
        logits.float().sum().backward()
        torch.cuda.synchronize()
    names = {e.key for e in prof.key_averages()}
    return {
        "cudnn_enabled": torch.backends.cudnn.enabled and torch.backends.cudnn.is_available(),
        "cudnn_version": torch.backends.cudnn.version(),
        "aten_cudnn_rnn_called": any("_cudnn_rnn" in n for n in names),
        "rnn_kernels": sorted(n for n in names if "rnn" in n.lower() or "lstm" in n.lower())[:12],
    }


def check_decoding(run_dir: str, beam: int) -> dict[str, Any]:
    import torch

    from seq2seq_rnn.data.corpus import load_split
    from seq2seq_rnn.inference.translator import Translator
    from seq2seq_rnn.metrics import score

    translator = Translator.load(run_dir, "best", "cuda")
    corpus = load_split(translator.recipe.data, "test")
    translator.translate(corpus.sources[:64], beam_size=beam)  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    hyps = translator.translate(corpus.sources, beam_size=beam, batch_size=64)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    ev = translator.recipe.evaluate
    return {
        "beam_size": beam,
        "sentences": len(hyps),
        "seconds": round(seconds, 2),
        "sentences_per_sec": round(len(hyps) / seconds, 1),
        "bleu_undertrained": round(score(hyps, corpus.targets, ev.tokenize, ev.lowercase).bleu, 2),
    }


def check_ray(work: Path, steps: int) -> dict[str, Any]:
    from seq2seq_rnn.config import load_recipe
    from seq2seq_rnn.integrations.ray import train_distributed
    from seq2seq_rnn.run.directory import RunDir

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    recipe = load_recipe(RECIPE, _overrides(steps))
    start = time.perf_counter()
    train_distributed(recipe, work / "ray", workers=2, gpus_per_worker=1)
    logged = [r for r in RunDir(work / "ray").read_metrics() if "tokens_per_sec" in r]
    return {
        "workers": 2,
        "steps": steps,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "tokens_per_sec_per_worker": logged[-1]["tokens_per_sec"] if logged else None,
        "loss_finite": bool(logged) and all(math.isfinite(r["loss"]) for r in logged),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default=str(ROOT / "docs" / "bench-gpu.json"))
    parser.add_argument("--steps", type=int, default=400, help="bf16 training steps (default 400)")
    parser.add_argument("--ray-steps", type=int, default=100)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--work", help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device here (torch {torch.__version__}); nothing to check on a CPU-only machine.")
        return 0
    sys.path.insert(0, str(ROOT))
    result: dict[str, Any] = {
        "machine": {
            "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "platform": platform.platform(),
            "bf16_supported": torch.cuda.is_bf16_supported(),
        },
        "command": "bash tools/gpu_check.sh",
    }
    ok = True
    with tempfile.TemporaryDirectory(prefix="gpu-check-", dir=args.work) as tmp:
        work = Path(tmp)
        steps = [
            ("training_bf16", lambda: check_training(work, args.steps)),
            ("decoding", lambda: check_decoding(str(work / "train"), args.beam_size)),
        ]
        if torch.cuda.device_count() >= 2:
            steps.append(("ray_train_2_workers", lambda: check_ray(work, args.ray_steps)))
        else:
            result["ray_train_2_workers"] = {"skipped": f"{torch.cuda.device_count()} GPU(s); needs 2"}
        for name, fn in steps:
            start = time.perf_counter()
            try:
                result[name] = fn()
            except Exception as exc:  # record and go on: one failure should not hide the other figures
                result[name] = {"error": f"{type(exc).__name__}: {exc}"}
                ok = False
            print(f"gpu_check: {name} ({time.perf_counter() - start:.0f} s): {json.dumps(result[name])}", flush=True)
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")  # so far
        training = result.get("training_bf16", {})
        if not training.get("loss_finite", False) or not training.get("cudnn_rnn", {}).get("aten_cudnn_rnn_called"):
            ok = False
    result["ok"] = ok
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"gpu_check: wrote {args.json}; {'all checks passed' if ok else 'SOME CHECKS FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
