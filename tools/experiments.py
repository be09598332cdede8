"""The deep-RNN experiment grid: train each variant, score it, write docs/experiments.md.

    python tools/experiments.py run [--only NAME ...] [--runs-dir runs/experiments]
    python tools/experiments.py report            # table, BLEU curves, gradient figure
    python tools/experiments.py tune-decoding --only lstm_2l   # beam / length penalty on validation

``recipes/experiments/grid.yaml`` names a base recipe, a fixed training budget and the
variants (dotted overrides of the base). Each variant trains in RUNS_DIR/NAME through the
ordinary CLI, so a run here is exactly ``seq2seq-rnn train`` with the ``--set`` list that
``experiment.json`` records. A variant with an ``experiment.json`` is finished and skipped;
one with a checkpoint but no result resumes (exact resume, so a kill costs nothing).
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

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # this checkout's package, as in the `-m seq2seq_rnn.cli` runs below (cwd=ROOT)
    sys.path.insert(0, str(ROOT))
GRID = ROOT / "recipes" / "experiments" / "grid.yaml"
RESULT = "experiment.json"


# ------------------------------------------------------------------ the grid
def load_grid(path: Path = GRID) -> dict[str, Any]:
    """The grid file: base recipe path (absolute), budget and variants, in file order."""
    grid = yaml.safe_load(path.read_text(encoding="utf-8"))
    unknown = set(grid) - {"base", "budget", "variants"}
    if unknown:
        raise SystemExit(f"{path}: unknown keys {sorted(unknown)}; expected base, budget, variants")
    grid["base"] = (path.parent / grid["base"]).resolve()
    grid["variants"] = {name: dict(sets or {}) for name, sets in grid["variants"].items()}
    return grid


def overrides(grid: dict[str, Any], name: str, extra: list[str]) -> list[str]:
    """``--set`` values for one variant: the budget, then the variant, then the caller's."""
    sets = {**grid.get("budget", {}), **grid["variants"][name]}
    return [f"{key}={json.dumps(value) if isinstance(value, str) else value}" for key, value in sets.items()] + extra


def cli(*args: str) -> list[str]:
    """The toolkit's command line, run by the same interpreter as this script."""
    return [sys.executable, "-m", "seq2seq_rnn.cli", *args]


# ------------------------------------------------------------------ running
def run_variant(grid: dict[str, Any], name: str, runs_dir: Path, extra: list[str]) -> dict[str, Any]:
    """Train (or resume) one variant, then score its best checkpoint on the test split."""
    run_dir = runs_dir / name
    done = run_dir / RESULT
    if done.is_file():
        print(f"[{name}] finished earlier: {done}", flush=True)
        return json.loads(done.read_text(encoding="utf-8"))
    sets = overrides(grid, name, extra)
    resume = (run_dir / "checkpoints" / "last.pt").is_file()
    command = cli("train", str(grid["base"]), "--output-dir", str(run_dir), "--no-test")
    for item in sets:
        command += ["--set", item]
    if resume:
        command.append("--resume")
    print(f"[{name}] {'resuming' if resume else 'training'}: {' '.join(command[2:])}", flush=True)
    started = time.time()
    subprocess.run(command, check=True, cwd=ROOT)
    wall = time.time() - started
    scored = subprocess.run(
        cli("evaluate", str(run_dir), "--split", "test", "--json"), check=True, cwd=ROOT, capture_output=True, text=True
    )
    test = json.loads(scored.stdout.strip().splitlines()[-1])
    result = {
        "name": name,
        "overrides": sets,
        "test": test,
        "wall_seconds_this_start": round(wall, 1),
        "resumed": resume,
        "parameters": count_parameters(run_dir),
        "commit": git_commit(),
    }
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, done)
    print(f"[{name}] test BLEU {test['bleu']:.2f} chrF {test['chrf']:.2f}", flush=True)
    return result


def count_parameters(run_dir: Path) -> int:
    from seq2seq_rnn.inference.translator import Translator

    model = Translator.load(run_dir, "best", device="cpu").model
    return sum(p.numel() for p in model.parameters())


def git_commit() -> str:
    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return found.stdout.strip() or "unknown"


# ------------------------------------------------------------------ reading runs
def summarise(run_dir: Path) -> dict[str, Any] | None:
    """One table row from a finished variant, or None if it has not finished."""
    done = run_dir / RESULT
    if not done.is_file():
        return None
    result = json.loads(done.read_text(encoding="utf-8"))
    from seq2seq_rnn.run.directory import RunDir  # the one reader of metrics.jsonl

    rows = RunDir(run_dir).read_metrics()
    train = [r for r in rows if "tokens_per_sec" in r]
    val = [r for r in rows if "val_bleu" in r]
    rates = [r["tokens_per_sec"] for r in train[1:]] or [r["tokens_per_sec"] for r in train]
    result["curve"] = [(r["step"], r["val_bleu"]) for r in val]
    result["best_val_bleu"] = max((r["val_bleu"] for r in val), default=float("nan"))
    result["tokens_per_sec"] = sum(rates) / len(rates) if rates else float("nan")
    result["train_seconds"] = train_seconds(run_dir)
    result["final_train_loss"] = train[-1]["loss"] if train else float("nan")
    return result


def train_seconds(run_dir: Path) -> float:
    """Training time over all starts, as the trainer counted it (in last.pt's progress)."""
    from seq2seq_rnn.run.checkpoint import load_checkpoint

    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    return float(state["progress"]["train_seconds"])


# ------------------------------------------------------------------ decoding settings
BEAMS = (1, 3, 5, 8)
LENGTH_PENALTIES = (0.6, 1.0, 1.4)


def tune_decoding(run_dir: Path) -> dict[str, Any]:
    """Beam size and length penalty chosen on validation BLEU only, then scored once on test;
    the whole table goes to RUN_DIR/decoding.json."""
    from seq2seq_rnn.data.corpus import load_split
    from seq2seq_rnn.inference.translator import Translator
    from seq2seq_rnn.metrics import score

    translator = Translator.load(run_dir, "best", device="cpu")
    data, ev = translator.recipe.data, translator.recipe.evaluate
    val, test = load_split(data, "validation"), load_split(data, "test")
    table = []
    for beam in BEAMS:
        for penalty in LENGTH_PENALTIES if beam > 1 else (1.0,):  # greedy ignores the penalty
            hyps = translator.translate(val.sources, beam_size=beam, length_penalty=penalty)
            scores = score(hyps, val.targets, ev.tokenize, ev.lowercase)
            table.append({"beam_size": beam, "length_penalty": penalty, "val_bleu": round(scores.bleu, 2)})
            print(f"  beam {beam} length penalty {penalty}: validation BLEU {scores.bleu:.2f}", flush=True)
    best = max(table, key=lambda row: row["val_bleu"])
    hyps = translator.translate(test.sources, beam_size=best["beam_size"], length_penalty=best["length_penalty"])
    test_scores = score(hyps, test.targets, ev.tokenize, ev.lowercase)
    result = {"validation": table, "chosen": best, "test": test_scores.as_dict()}
    (run_dir / "decoding.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"chosen on validation: {best}; test BLEU {test_scores.bleu:.2f} chrF {test_scores.chrf:.2f}")
    return result


# ------------------------------------------------------------------ entry point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run", "report", "list", "tune-decoding"])
    parser.add_argument("--grid", type=Path, default=GRID)
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "experiments")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="these variants only (default: all, in order)")
    parser.add_argument("--set", dest="extra", action="append", default=[], help="extra override for every run")
    parser.add_argument(
        "--docs", type=Path, default=ROOT / "docs", help="where report writes (experiments.md, images/)"
    )
    args = parser.parse_args(argv)
    grid = load_grid(args.grid)
    names = args.only or list(grid["variants"])
    unknown = [n for n in names if n not in grid["variants"]]
    if unknown:
        parser.error(f"unknown variants {unknown}; valid: {', '.join(grid['variants'])}")
    if args.command == "list":
        for name in names:
            print(name, " ".join(overrides(grid, name, args.extra)))
    elif args.command == "tune-decoding":
        for name in names:
            tune_decoding(args.runs_dir / name)
    elif args.command == "run":
        for name in names:
            run_variant(grid, name, args.runs_dir, args.extra)
    else:
        from experiments_report import write_report  # tools/experiments_report.py: tables and figures

        write_report(grid, names, args.runs_dir, args.docs, summarise)
    return 0


if __name__ == "__main__":
    sys.exit(main())
