"""The deep-RNN experiment grid: train each variant, score it, write docs/experiments.md.

    python tools/experiments.py run [--budget converged|early] [--only NAME ...] [--runs-dir runs/experiments]
    python tools/experiments.py report            # tables (mean ± std over seeds), curves, gradient figure
    python tools/experiments.py tune-decoding --only lstm_2l   # beam / length penalty on validation

``recipes/experiments/grid.yaml`` names a base recipe, the training budgets (``converged``:
early stopping on validation BLEU; ``early``: a fixed 500 updates), the comparisons whose
variants train with several seeds, and the variants (dotted overrides of the base). Each run
trains in RUNS_DIR/BUDGET/NAME (``NAME.seedN`` for seeds after the first) through the ordinary
CLI, so a run here is exactly ``seq2seq-rnn train`` with the ``--set`` list that
``experiment.json`` records. A run with an ``experiment.json`` is finished and skipped; one
with a checkpoint but no result resumes (exact resume, so a kill costs nothing).

A finished run's ``experiment.json`` holds everything the tables need (scores, validation
curve, stop reason, time); ``run`` also copies it to RECORDS/BUDGET/ (default
docs/experiments/records, kept in the repository), so ``report`` can rebuild the tables of
runs whose directories are gone (the gradient figure needs the checkpoints).
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
RECORDS = ROOT / "docs" / "experiments" / "records"
RESULT = "experiment.json"
GRID_KEYS = {"base", "budgets", "comparisons", "variants"}
BUDGET_KEYS = {"sets", "extra_seeds"}


# ------------------------------------------------------------------ the grid
def load_grid(path: Path = GRID) -> dict[str, Any]:
    """The grid file: base recipe path (absolute), budgets, comparisons and variants, in file order."""
    grid = yaml.safe_load(path.read_text(encoding="utf-8"))
    unknown = set(grid) - GRID_KEYS
    if unknown or "budgets" not in grid or "variants" not in grid:
        raise SystemExit(f"{path}: keys {sorted(grid)}; expected {', '.join(sorted(GRID_KEYS))} (comparisons optional)")
    grid["base"] = (path.parent / grid["base"]).resolve()
    grid["variants"] = {name: dict(sets or {}) for name, sets in grid["variants"].items()}
    for name, budget in grid["budgets"].items():
        if not isinstance(budget, dict) or set(budget) - BUDGET_KEYS:
            raise SystemExit(f"{path}: budgets.{name}: expected the keys {sorted(BUDGET_KEYS)}")
    grid["comparisons"] = grid.get("comparisons") or {}
    for group, spec in grid["comparisons"].items():
        strays = [v for v in spec.get("variants", []) if v not in grid["variants"]]
        if strays or int(spec.get("seeds", 1)) < 1:
            raise SystemExit(f"{path}: comparisons.{group}: unknown variants {strays} or seeds < 1")
    return grid


def seeds_of(grid: dict[str, Any], budget: str, name: str) -> list[int]:
    """Seeds 1..N, N the largest ``seeds`` of the comparisons naming the variant (1 where none does)."""
    if not grid["budgets"][budget].get("extra_seeds", False):
        return [1]
    counts = [int(s.get("seeds", 1)) for s in grid["comparisons"].values() if name in s.get("variants", [])]
    return list(range(1, max(counts, default=1) + 1))


def planned_runs(grid: dict[str, Any], budget: str, names: list[str]) -> list[tuple[str, int]]:
    """(variant, seed) in running order: seed 1 of every variant first, then the extra seeds."""
    runs = [(name, seed) for name in names for seed in seeds_of(grid, budget, name)]
    return sorted(runs, key=lambda run: run[1])  # stable: file order within a seed


def run_name(name: str, seed: int) -> str:
    return name if seed == 1 else f"{name}.seed{seed}"


def overrides(grid: dict[str, Any], budget: str, name: str, seed: int, extra: list[str]) -> list[str]:
    """``--set`` values for one run: the budget, the seed, then the variant, then the caller's."""
    sets = {**grid["budgets"][budget]["sets"], "seed": seed, **grid["variants"][name]}
    return [f"{key}={json.dumps(value) if isinstance(value, str) else value}" for key, value in sets.items()] + extra


def cli(*args: str) -> list[str]:
    """The toolkit's command line, run by the same interpreter as this script."""
    return [sys.executable, "-m", "seq2seq_rnn.cli", *args]


# ------------------------------------------------------------------ running
def run_variant(
    grid: dict[str, Any], budget: str, name: str, seed: int, dirs: dict[str, Path], extra: list[str]
) -> None:
    """Train (or resume) one run, score its best checkpoint on the test split, record it."""
    run_dir = dirs["runs"] / budget / run_name(name, seed)
    label = f"{budget}/{run_name(name, seed)}"
    done = run_dir / RESULT
    if done.is_file():
        print(f"[{label}] finished earlier: {done}", flush=True)
        return
    sets = overrides(grid, budget, name, seed, extra)
    resume = (run_dir / "checkpoints" / "last.pt").is_file()
    command = cli("train", str(grid["base"]), "--output-dir", str(run_dir), "--no-test")
    for item in sets:
        command += ["--set", item]
    if resume:
        command.append("--resume")
    print(f"[{label}] {'resuming' if resume else 'training'}: {' '.join(command[2:])}", flush=True)
    started = time.time()
    subprocess.run(command, check=True, cwd=ROOT)
    wall = time.time() - started
    scored = subprocess.run(
        cli("evaluate", str(run_dir), "--split", "test", "--json"), check=True, cwd=ROOT, capture_output=True, text=True
    )
    test = json.loads(scored.stdout.strip().splitlines()[-1])
    result = {
        "name": name,
        "seed": seed,
        "budget": budget,
        "overrides": sets,
        "test": test,
        "wall_seconds_this_start": round(wall, 1),
        "resumed": resume,
        "parameters": count_parameters(run_dir),
        "commit": git_commit(),
        **training_summary(run_dir, grid["budgets"][budget]["sets"]),
    }
    write_json(done, result)
    if dirs.get("records"):
        write_json(dirs["records"] / budget / f"{run_name(name, seed)}.json", result)
    print(f"[{label}] test BLEU {test['bleu']:.2f} chrF {test['chrf']:.2f}", flush=True)


def write_json(path: Path, value: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def count_parameters(run_dir: Path) -> int:
    from seq2seq_rnn.inference.translator import Translator

    model = Translator.load(run_dir, "best", device="cpu").model
    return sum(p.numel() for p in model.parameters())


def git_commit() -> str:
    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return found.stdout.strip() or "unknown"


# ------------------------------------------------------------------ reading runs
def training_summary(run_dir: Path, budget_sets: dict[str, Any]) -> dict[str, Any]:
    """What the tables need from a finished run's metrics: curve, best, stop reason, speed, time."""
    from seq2seq_rnn.run.directory import RunDir  # the one reader of metrics.jsonl

    rows = RunDir(run_dir).read_metrics()
    train = [r for r in rows if "tokens_per_sec" in r]
    val = [r for r in rows if "val_bleu" in r]
    rates = [r["tokens_per_sec"] for r in train[1:]] or [r["tokens_per_sec"] for r in train]
    best = max(val, key=lambda r: r["val_bleu"], default=None)
    patience = int(budget_sets.get("train.early_stopping_patience", 0))
    after_best = sum(1 for r in val if best is not None and r["step"] > best["step"])
    return {
        "curve": [(r["step"], r["val_bleu"]) for r in val],
        "best_val_bleu": best["val_bleu"] if best else float("nan"),
        "best_step": best["step"] if best else 0,
        "last_step": train[-1]["step"] if train else 0,
        "stopped_early": bool(patience) and after_best >= patience,
        "tokens_per_sec": sum(rates) / len(rates) if rates else float("nan"),
        "train_seconds": train_seconds(run_dir),
        "final_train_loss": train[-1]["loss"] if train else float("nan"),
    }


def summarise(run_dir: Path, record: Path | None = None) -> dict[str, Any] | None:
    """One finished run's result: its experiment.json (from the run, else its record), or None."""
    done = run_dir / RESULT
    source = done if done.is_file() else record if record is not None and record.is_file() else None
    if source is None:
        return None
    result = json.loads(source.read_text(encoding="utf-8"))
    if "curve" not in result:  # written before experiment.json carried the summary
        result.update(training_summary(run_dir, {}))
    result.setdefault("seed", 1)
    return result


def train_seconds(run_dir: Path) -> float:
    """Training time over all starts, as the trainer counted it (in last.pt's progress)."""
    from seq2seq_rnn.run.checkpoint import load_checkpoint

    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    return float(state["progress"]["train_seconds"])


def collect(grid: dict[str, Any], budget: str, names: list[str], dirs: dict[str, Path]) -> list[dict[str, Any]]:
    """Every finished run of a budget, from its directory or, where that is gone, its record."""
    rows = []
    for name, seed in planned_runs(grid, budget, names):
        record = dirs["records"] / budget / f"{run_name(name, seed)}.json" if dirs.get("records") else None
        found = summarise(dirs["runs"] / budget / run_name(name, seed), record)
        if found is not None:
            rows.append(found)
    return rows


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
    parser.add_argument("--budget", default="converged", help="which budget of the grid to run (default: converged)")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "experiments")
    parser.add_argument("--records", type=Path, default=RECORDS, help="where finished runs are recorded")
    parser.add_argument("--no-records", action="store_true", help="record nothing outside the run directories")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="these variants only (default: all, in order)")
    parser.add_argument("--seeds", type=int, default=0, metavar="N", help="at most N seeds per variant (0: the grid's)")
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
    if args.budget not in grid["budgets"]:
        parser.error(f"unknown budget {args.budget!r}; valid: {', '.join(grid['budgets'])}")
    dirs = {"runs": args.runs_dir, "records": None if args.no_records else args.records}
    runs = [(n, s) for n, s in planned_runs(grid, args.budget, names) if not args.seeds or s <= args.seeds]
    if args.command == "list":
        for name, seed in runs:
            print(
                f"{args.budget}/{run_name(name, seed)}", " ".join(overrides(grid, args.budget, name, seed, args.extra))
            )
    elif args.command == "tune-decoding":
        for name in names:
            tune_decoding(args.runs_dir / args.budget / name)
    elif args.command == "run":
        for name, seed in runs:
            run_variant(grid, args.budget, name, seed, dirs, args.extra)
    else:
        from experiments_report import write_report  # tools/experiments_report.py: tables and figures

        tables = {budget: collect(grid, budget, names, dirs) for budget in grid["budgets"]}
        write_report(grid, names, tables, args.runs_dir, args.docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
