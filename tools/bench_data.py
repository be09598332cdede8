#!/usr/bin/env python
"""The data benchmark behind ``tools/bench.py --only data``: preparation time and memory at scale.

For each size (default 30k, 300k and 3M pairs) a deterministic synthetic corpus
is resampled from the shipped Multi30k training pairs (rng seeded by the size)
and the default recipe is pointed at it (validation: 200 shipped pairs, one
training step). Each measurement runs in a fresh process so that its peak RSS
(``ru_maxrss``) is its own:

- ``cold``: an empty data cache and run directory → read, train the tokenizer,
  tokenize, build the model, one training step. ``data_seconds``: the data part of
  ``prep_seconds`` (``training.prepare_data``); ``pairs_per_sec`` = pairs / data_seconds.
- ``warm``: the same run resumed (``--resume``) with the cache from ``cold``.
- ``ray2``: ``--workers 2`` on a local Ray cluster (warm cache), peak RSS of each
  Ray Train worker (its ``VmHWM``) and of the driver.

``--compare /path/to/checkout`` (e.g. ``git worktree add --detach /tmp/before <commit>``)
measures that checkout too, interleaved size by size; ``code`` in each row says which
code ran.
Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MULTI30K = ROOT / "data" / "multi30k"


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("km")) * scale)


def make_corpus(n: int, folder: Path) -> tuple[Path, Path]:
    """n pairs drawn with replacement from Multi30k train (seed n); written once, then reused."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    src_path, tgt_path = folder / f"train{n}.de", folder / f"train{n}.en"
    done = folder / f"train{n}.done"
    if done.is_file():
        return src_path, tgt_path
    src = gzip.open(MULTI30K / "train.de.gz", "rt", encoding="utf-8").read().split("\n")[:-1]
    tgt = gzip.open(MULTI30K / "train.en.gz", "rt", encoding="utf-8").read().split("\n")[:-1]
    index = np.random.default_rng(n).integers(0, len(src), n)
    for path, lines in ((src_path, src), (tgt_path, tgt)):
        with path.open("w", encoding="utf-8") as out:
            for start in range(0, n, 100_000):
                out.write("".join(lines[i] + "\n" for i in index[start : start + 100_000]))
    done.write_text("ok\n")
    return src_path, tgt_path


def overrides(src: Path, tgt: Path) -> list[str]:
    return [
        f"data.train={{source: '{src}', target: '{tgt}'}}",
        "data.validation.limit=200",
        "train.max_steps=1",
        "train.validate_every=0",
    ]


# ------------------------------------------------------------------ phases (child processes)
def phase_step(args: argparse.Namespace) -> dict[str, Any]:
    """Prepare (cold or resumed) and take one training step, through the training set-up functions.

    A checkout from before ``seq2seq_rnn/training/`` (``--compare``) runs :func:`_phase_step_trainer`.
    """
    import torch

    import seq2seq_rnn

    try:
        from seq2seq_rnn import training
    except ImportError:
        return _phase_step_trainer(args)
    from seq2seq_rnn.config import load_recipe
    from seq2seq_rnn.data.cache import cache_root
    from seq2seq_rnn.run.directory import RunDir

    torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe, overrides(Path(args.src), Path(args.tgt)))
    started = time.perf_counter()
    run, resume, hooks = RunDir(Path(args.run)), args.phase == "warm", training.Hooks()
    device = training.prepare_process(recipe)
    training.prepare_run(recipe, run, resume)
    training.seed_everything(recipe)
    data_started = time.perf_counter()
    data = training.prepare_data(recipe, run, cache_root(None))
    data_seconds = time.perf_counter() - data_started
    progress = training.Progress()
    parts = training.build_parts(recipe, run, hooks, device, data, progress, training.Window())
    if resume:
        parts.checkpoints.restore()
    prep = time.perf_counter() - started
    batch = training.train_batch(data, parts.sampler.plan(0).batch(0), device)
    parts.updater.step(batch, progress, lambda: "")
    first_step = time.perf_counter() - started
    if args.phase == "cold":
        parts.checkpoints.save_last()  # so that "warm" is a resume
    training.close_log_file(run.log)
    return _step_row(seq2seq_rnn.__file__, prep, data_seconds, first_step)


def _phase_step_trainer(args: argparse.Namespace) -> dict[str, Any]:
    """The same through the Trainer of a checkout from before the training package."""
    import torch
    from seq2seq_rnn.train import Trainer  # type: ignore[import-not-found]

    import seq2seq_rnn
    from seq2seq_rnn.config import load_recipe

    torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe, overrides(Path(args.src), Path(args.tgt)))
    started = time.perf_counter()
    trainer = Trainer(recipe, Path(args.run), resume=args.phase == "warm")
    name = "prepare_data" if hasattr(trainer, "prepare_data") else "_prepare_data"  # before: private
    data_seconds = _timed(trainer, name)
    trainer.prepare()
    prep = time.perf_counter() - started
    if hasattr(trainer.sampler, "plan"):  # the Arrow data path
        batch = trainer._load_batch(trainer.sampler.plan(0).batch(0))
    else:  # before it: Python lists
        batch = trainer._collate(trainer.sampler.batches(0)[0])
    trainer._train_step(batch)
    first_step = time.perf_counter() - started
    if args.phase == "cold":
        trainer._save_last()  # so that "warm" is a resume
    return _step_row(seq2seq_rnn.__file__, prep, data_seconds[0], first_step)


def _step_row(package_file: str, prep: float, data_seconds: float, first_step: float) -> dict[str, Any]:
    return {
        "code": str(Path(package_file).parent.parent),
        "prep_seconds": round(prep, 2),
        "data_seconds": round(data_seconds, 2),  # of prep: read + tokenizer + tokenize (or cache hits)
        "to_first_step_seconds": round(first_step, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        # the largest of its finished child processes (e.g. Dataset.map's num_proc workers)
        "children_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
    }


def _timed(obj: Any, name: str) -> list[float]:
    """Wrap obj.name to record its duration in the returned list's first item."""
    seconds = [0.0]
    method = getattr(obj, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            seconds[0] += time.perf_counter() - started

    setattr(obj, name, timed)
    return seconds


def phase_ray(args: argparse.Namespace) -> dict[str, Any]:
    """2 Ray Train workers, one step; every worker's peak RSS read from /proc (VmHWM) while it runs."""
    import ray

    from seq2seq_rnn.config import load_recipe
    from seq2seq_rnn.integrations.ray import train_distributed

    recipe = load_recipe(args.recipe, [*overrides(Path(args.src), Path(args.tgt)), "train.threads=1"])
    ray.init(num_cpus=2, logging_level="ERROR", include_dashboard=False)
    peaks: dict[int, int] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for pid, title in _processes():
                if "RayTrainWorker" in title and _descends_from(pid, os.getpid()):  # this cluster's workers
                    peaks[pid] = max(peaks.get(pid, 0), _vmhwm_kb(pid))
            time.sleep(0.2)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    started = time.perf_counter()
    try:
        train_distributed(recipe, Path(args.run), workers=2)
    finally:
        stop.set()
        thread.join()
        ray.shutdown()
    return {
        "seconds": round(time.perf_counter() - started, 1),
        # the two training workers: the largest Ray Train worker processes (Ray may start spare ones)
        "worker_peak_rss_mb": sorted(round(kb / 1024) for kb in peaks.values())[-2:],
        "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def _processes() -> list[tuple[int, str]]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                out.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
            except OSError:
                continue
    return out


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if pid == ancestor:
            return True
    return False


def _vmhwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# ------------------------------------------------------------------ driver
def _child(phase: str, extra: list[str], env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--phase", phase, *extra], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-5:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(
    sizes: list[int],
    work: Path,
    recipe: str,
    ray_sizes: list[int],
    threads: int,
    compare: str = "",
    compare_sizes: tuple[int, ...] = (30_000, 300_000),
) -> dict[str, Any]:
    """Each size with this checkout; with ``compare`` (another checkout's root), that one's
    phases interleaved with these, size by size, so both see the same minutes of a shared machine."""
    results: dict[str, Any] = {}
    work = work.resolve()
    for n in sizes:
        src, tgt = make_corpus(n, work / "corpora")
        codes = {"": "", **({"before:": compare} if compare and n in compare_sizes else {})}
        for label, pythonpath in codes.items():
            row = _one_size(n, src, tgt, work, recipe, n in ray_sizes, threads, pythonpath)
            results[f"{label}{n}"] = row
            print(json.dumps({label or "this": row}), flush=True)
    return results


def _one_size(
    n: int, src: Path, tgt: Path, work: Path, recipe: str, with_ray: bool, threads: int, pythonpath: str
) -> dict[str, Any]:
    cache, run, ray_run = work / f"cache{n}", work / f"run{n}", work / f"ray{n}"
    for folder in (cache, run, ray_run):
        shutil.rmtree(folder, ignore_errors=True)
    env = {**os.environ, "SEQ2SEQ_RNN_CACHE": str(cache), "OMP_NUM_THREADS": str(threads)}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    common = ["--recipe", recipe, "--src", str(src), "--tgt", str(tgt), "--threads", str(threads)]
    row: dict[str, Any] = {"pairs": n}
    cold = _child("cold", [*common, "--run", str(run)], env)
    row["cold"] = cold
    if "data_seconds" in cold:
        row["pairs_per_sec"] = round(n / cold["data_seconds"])
    row["warm"] = _child("warm", [*common, "--run", str(run)], env)
    if with_ray:
        row["ray2"] = _child("ray", [*common, "--run", str(ray_run)], {**env, "RAY_AUTH_MODE": "disabled"})
    shutil.rmtree(run, ignore_errors=True)
    shutil.rmtree(ray_run, ignore_errors=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="30k,300k,3M")
    parser.add_argument("--ray-sizes", default="30k,300k", help="sizes that also get the 2-worker Ray run")
    parser.add_argument("--work", default=str(ROOT / "runs" / "bench-data"), help="corpora, caches and runs")
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "multi30k_de_en_lstm.yaml"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default="")
    parser.add_argument("--compare", default="", help="root of another checkout to measure interleaved (before/after)")
    parser.add_argument("--compare-sizes", default="30k,300k", help="sizes at which --compare runs too")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--tgt", help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        result = phase_ray(args) if args.phase == "ray" else phase_step(args)
        print(json.dumps(result))
        return 0
    sizes = [parse_size(s) for s in args.sizes.split(",") if s]
    ray_sizes = [parse_size(s) for s in args.ray_sizes.split(",") if s]
    compare_sizes = tuple(parse_size(s) for s in args.compare_sizes.split(",") if s)
    results = bench(sizes, Path(args.work), args.recipe, ray_sizes, args.threads, args.compare, compare_sizes)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
