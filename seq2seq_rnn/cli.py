"""Command line: ``seq2seq-rnn train|translate|evaluate|list-cells``.

Thin by design: parse, load the recipe, call the library. Errors a user can
fix (Seq2SeqError) are printed without a traceback and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from seq2seq_rnn.errors import Seq2SeqError, TrainingInterrupted


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seq2seq-rnn", description="Deep recurrent neural machine translation.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a recipe")
    train.add_argument("recipe", type=Path)
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value by dotted path (repeatable)",
    )
    train.add_argument("--output-dir", type=Path, help="run directory (default: runs/<recipe name>)")
    train.add_argument(
        "--resume", action="store_true", help="continue the run in --output-dir from its last checkpoint"
    )
    train.add_argument("--no-test", action="store_true", help="skip the test-set evaluation at the end")

    translate = sub.add_parser("translate", help="translate stdin to stdout, one sentence per line")
    _run_args(translate)
    translate.add_argument("--batch-size", type=int, help="sentences per batch")

    evaluate = sub.add_parser("evaluate", help="BLEU and chrF (sacrebleu) of a run")
    _run_args(evaluate)
    evaluate.add_argument("--split", choices=["validation", "test"], help="default: the recipe's evaluate.split")
    evaluate.add_argument("--src", type=Path, help="source file to translate (with --ref)")
    evaluate.add_argument("--ref", type=Path, help="reference translations of --src")
    evaluate.add_argument("--json", action="store_true", help="print the scores as JSON")

    sub.add_parser("list-cells", help="list the registered recurrent cells and where they come from")
    return parser


def _run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--beam-size", type=int, help="default: the recipe's decode.beam_size")
    parser.add_argument("--checkpoint", default="best", help="best, last, or a checkpoint path (default: best)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def cmd_train(args: argparse.Namespace) -> int:
    from seq2seq_rnn.config import load_recipe
    from seq2seq_rnn.model import check_model_config
    from seq2seq_rnn.train import Trainer

    recipe = load_recipe(args.recipe, args.overrides)
    check_model_config(recipe.model)  # cell options, attention sizes: fail before any work
    run_dir = args.output_dir or Path("runs") / recipe.name
    Trainer(recipe, run_dir, resume=args.resume).fit()
    print(f"run directory: {run_dir}")
    if not args.no_test and recipe.data.test is not None:
        _report(run_dir, "test", None, "best", "auto", as_json=False)
    return 0


def _report(run_dir: Path, split: str, beam: int | None, checkpoint: str, device: str, as_json: bool) -> None:
    from seq2seq_rnn.evaluate import evaluate_split, record_scores
    from seq2seq_rnn.translator import Translator

    translator = Translator.load(run_dir, checkpoint, device)
    scores, _ = evaluate_split(translator, split, beam)
    beam = beam or translator.recipe.decode.beam_size
    record_scores(run_dir, split, scores, {"checkpoint": checkpoint, "beam_size": beam})
    _print_scores(f"{split} ({checkpoint} checkpoint, beam {beam})", scores, as_json)


def _print_scores(title: str, scores: object, as_json: bool) -> None:
    if as_json:
        print(json.dumps(scores.as_dict()))  # type: ignore[attr-defined]
    else:
        print(f"{title}: {scores.format()}")  # type: ignore[attr-defined]


def cmd_translate(args: argparse.Namespace) -> int:
    from seq2seq_rnn.translator import Translator

    translator = Translator.load(args.run_dir, args.checkpoint, args.device)
    stdin = open(sys.stdin.fileno(), encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    lines = [line.rstrip("\r\n") for line in stdin]
    for out in translator.translate(lines, beam_size=args.beam_size, batch_size=args.batch_size):
        sys.stdout.write(out.replace("\n", " ") + "\n")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from seq2seq_rnn.evaluate import evaluate_files
    from seq2seq_rnn.translator import Translator

    if (args.src is None) != (args.ref is None):
        raise Seq2SeqError("--src and --ref go together")
    if args.src is None:
        from seq2seq_rnn.rundir import RunDir

        split = args.split or RunDir(args.run_dir).load_recipe().evaluate.split
        _report(args.run_dir, split, args.beam_size, args.checkpoint, args.device, args.json)
        return 0
    translator = Translator.load(args.run_dir, args.checkpoint, args.device)
    scores, _ = evaluate_files(translator, args.src, args.ref, args.beam_size)
    _print_scores(f"{args.src}", scores, args.json)
    return 0


def cmd_list_cells(args: argparse.Namespace) -> int:
    from seq2seq_rnn.components import CELLS

    entries = CELLS.entries()
    width = max(len(e.name) for e in entries)
    for entry in entries:
        print(f"{entry.name:<{width}}  {entry.origin}")
    return 0


COMMANDS = {"train": cmd_train, "translate": cmd_translate, "evaluate": cmd_evaluate, "list-cells": cmd_list_cells}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    try:
        return COMMANDS[args.command](args)
    except TrainingInterrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return 130
    except Seq2SeqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
