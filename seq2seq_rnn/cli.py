"""Command line: ``seq2seq-rnn train|tune|translate|evaluate|plot|export|list-cells``.

Thin by design: parse, load the recipe, call the library. Errors a user can
fix (Seq2SeqError) are printed without a traceback and exit with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from seq2seq_rnn.errors import (
    CheckpointError,
    PluginExit,
    Seq2SeqError,
    TrainingInterrupted,
    UsageError,
)

if TYPE_CHECKING:
    from seq2seq_rnn.evaluate import Evaluation
    from seq2seq_rnn.inference.translator import Translator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seq2seq-rnn", description="Deep recurrent neural machine translation.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a recipe")
    train.add_argument("recipe", type=Path)
    _import_arg(train)
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
    train.add_argument("--workers", type=positive_int, help="data-parallel workers on Ray (default: scaling.workers)")
    train.add_argument("--gpus-per-worker", type=float, help="GPUs per Ray worker (default: scaling.gpus_per_worker)")
    train.add_argument("--address", help="Ray cluster address (default: scaling.address, RAY_ADDRESS, or a local one)")

    translate = sub.add_parser("translate", help="translate stdin to stdout, one sentence per line")
    _run_args(translate)
    translate.add_argument("--batch-size", type=positive_int, help="sentences per batch (>= 1)")
    translate.add_argument(
        "--attention-plot", type=Path, metavar="DIR", help="also write an attention heat map per sentence into DIR"
    )
    translate.add_argument("--ray", action="store_true", help="translate --input files with Ray Data actors")
    translate.add_argument("--input", type=Path, nargs="+", metavar="FILE", help="with --ray: files to translate")
    translate.add_argument("--output", type=Path, metavar="DIR", help="with --ray: OUTPUT/<name of each input>")
    translate.add_argument("--actors", type=int, default=1, help="with --ray: translating actors (default 1)")
    translate.add_argument("--gpus-per-actor", type=float, default=0.0, help="with --ray: GPUs per actor (default 0)")
    translate.add_argument("--address", help="with --ray: Ray cluster address (default: RAY_ADDRESS or a local one)")

    evaluate = sub.add_parser("evaluate", help="BLEU and chrF (sacrebleu) of a run")
    _run_args(evaluate)
    evaluate.add_argument("--split", choices=["validation", "test"], help="default: the recipe's evaluate.split")
    evaluate.add_argument("--src", type=Path, help="source file to translate (with --ref)")
    evaluate.add_argument("--ref", type=Path, help="reference translations of --src")
    evaluate.add_argument("--json", action="store_true", help="print the scores as JSON")

    tune = sub.add_parser("tune", help="run the recipe's sweep: section with Ray Tune")
    tune.add_argument("recipe", type=Path)
    _import_arg(tune)
    tune.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    tune.add_argument("--output-dir", type=Path, help="sweep directory (default: runs/<recipe name>-sweep)")
    tune.add_argument("--num-samples", type=positive_int, help="override sweep.num_samples")
    tune.add_argument("--address", help="Ray cluster address (default: scaling.address, RAY_ADDRESS, or a local one)")

    plot = sub.add_parser("plot", help="PNGs of training loss, validation loss/BLEU and learning rate")
    plot.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="one or more runs (overlaid)")
    plot.add_argument("--output", type=Path, help="folder for the PNGs (default: RUN_DIR/plots of the first run)")

    export = sub.add_parser("export", help="write a self-contained model that translates without this package")
    export.add_argument("run_dir", type=Path)
    _import_arg(export)
    export.add_argument("--format", default="torchscript", choices=["torchscript", "onnx"])
    export.add_argument("--output", type=Path, help="export folder (default: RUN_DIR/export-FORMAT)")
    export.add_argument("--checkpoint", default="best", help="best, last, or a checkpoint path (default: best)")
    export.add_argument(
        "--quantize", default="none", choices=["none", "int8"], help="int8: dynamic int8 weights (torchscript only)"
    )

    average = sub.add_parser("average", help="average the weights of several checkpoints into one")
    average.add_argument("run_dir", type=Path)
    average.add_argument("--checkpoints", type=Path, nargs="+", help="checkpoint files to average")
    average.add_argument(
        "--last", type=positive_int, help="average the newest N checkpoints kept by train.keep_checkpoints"
    )
    average.add_argument("--output", type=Path, help="default: RUN_DIR/checkpoints/averaged.pt")

    sub.add_parser("list-cells", help="list the registered recurrent cells and where they come from")
    _serve_parser(sub)
    return parser


def _serve_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = sub.add_parser("serve", help="serve runs over HTTP with Ray Serve (docs/serving.md)")
    serve.add_argument("run_dirs", nargs="+", metavar="[NAME=]RUN_DIR", help="one model per run directory")
    _import_arg(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--replicas", type=positive_int, default=1, help="replicas, each holding every model")
    serve.add_argument("--autoscale", metavar="MIN:MAX", help="autoscale between MIN and MAX replicas")
    serve.add_argument("--max-batch-size", type=positive_int, default=16, help="sentences decoded together")
    serve.add_argument(
        "--batch-wait-ms", type=float, default=20.0, help="under load, wait for a batch to fill (default 20 ms)"
    )
    serve.add_argument("--beam-size", type=positive_int, help="default beam (default: each recipe's)")
    serve.add_argument("--checkpoint", default="best", help="best, last, or a checkpoint path (default: best)")
    serve.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    serve.add_argument("--quantize", default="none", choices=["none", "int8"], help="int8: dynamic int8 weights")
    serve.add_argument("--cpus-per-replica", type=float, default=1.0)
    serve.add_argument("--gpus-per-replica", type=float, default=0.0)
    serve.add_argument("--address", help="an existing Ray cluster (default: RAY_ADDRESS or a private local one)")
    serve.add_argument("--api-key-file", type=Path, help="require 'Authorization: Bearer <key in FILE>'")
    serve.add_argument("--dashboard", action="store_true", help="start Ray's dashboard with a local cluster")
    serve.add_argument("--max-body-bytes", type=positive_int, default=1_000_000)
    serve.add_argument("--max-sentences", type=positive_int, default=64, help="sentences per request")
    serve.add_argument("--max-chars", type=positive_int, default=1_000, help="characters per sentence")
    serve.add_argument("--max-beam", type=positive_int, default=16)
    serve.add_argument("--max-length", type=positive_int, default=256, help="largest max_length a request may ask")
    serve.add_argument("--timeout-s", type=float, default=60.0, help="a request past it gets a 504")
    serve.add_argument(
        "--body-timeout-s", type=float, default=5.0, help="a request whose body has not arrived by then gets a 408"
    )


def _import_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module (dotted name or .py file) first, e.g. one whose register_cell() adds a cell; repeatable."
        " Also allows a recipe's or run directory's plugins: entry of the same name (train records it there)",
    )


def positive_int(text: str) -> int:
    """argparse type of counts (--beam-size, --batch-size, --last, ...): a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text[:40]!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="a run directory; several are decoded as an ensemble"
    )
    _import_arg(parser)
    parser.add_argument("--beam-size", type=positive_int, help="default: the recipe's decode.beam_size (>= 1)")
    parser.add_argument(
        "--checkpoint",
        action="append",
        metavar="best|last|PATH",
        help="checkpoint to use (default: best); repeat with one RUN_DIR to ensemble its checkpoints",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--quantize", default="none", choices=["none", "int8"], help="int8: dynamic int8 weights on the CPU (faster)"
    )
    parser.add_argument(  # bf16 (issue 22)
        "--precision",
        default="fp32",
        choices=["fp32", "bf16", "auto"],
        help="bf16: weights and activations in bf16 (with --quantize int8: the output layer); "
        "auto: bf16 where the device has fast bf16 (AVX512-BF16/AMX, CUDA), else fp32",
    )


def cmd_train(args: argparse.Namespace) -> int:
    from seq2seq_rnn.config import load_recipe
    from seq2seq_rnn.integrations import require_ray, uses_ray, with_scaling
    from seq2seq_rnn.model import check_model_config
    from seq2seq_rnn.run.directory import RunDir
    from seq2seq_rnn.training import Trainer

    recipe = load_recipe(args.recipe, args.overrides)
    if args.imports:  # the run directory remembers them: translate/evaluate/export of it need the same --import
        plugins = [p for p in args.imports if p not in recipe.plugins]
        recipe = recipe.model_copy(update={"plugins": [*recipe.plugins, *plugins]})
    check_model_config(recipe.model)  # cell options, attention sizes: fail before any work
    run_dir = args.output_dir or Path("runs") / recipe.name
    recipe = with_scaling(recipe, args.workers, args.gpus_per_worker, args.address)
    if uses_ray(recipe):
        require_ray("--workers/--address (scaling:)")
    run = RunDir(run_dir)
    run.claim(args.resume)  # a folder that is not a run of ours is refused unchanged
    with run.lock("train"):  # held through the test scores and the model card
        if uses_ray(recipe):
            from seq2seq_rnn.integrations.ray import train_distributed

            train_distributed(recipe, run_dir, resume=args.resume)
        else:
            Trainer(recipe, run_dir, resume=args.resume).fit()
        print(f"run directory: {run_dir}")
        if not args.no_test and recipe.data.test is not None:
            _report([(run_dir, "best")], "test", None, "auto", as_json=False)
        _write_model_card(run_dir, args)
    return 0


def _write_model_card(run_dir: Path, args: argparse.Namespace) -> None:
    from seq2seq_rnn.run.modelcard import write_model_card

    command = ["train", str(args.recipe), *(a for o in args.overrides for a in ("--set", o))]
    command += ["--output-dir", str(run_dir)]
    for flag in ("workers", "gpus_per_worker", "address"):
        if getattr(args, flag, None) is not None:
            command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    try:
        print(f"model card: {write_model_card(run_dir, command)}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, Seq2SeqError) as exc:  # the run is fine
        print(f"warning: no model card written ({type(exc).__name__}: {exc})", file=sys.stderr)


def _members(args: argparse.Namespace) -> list[tuple[Path, str]]:
    """(run directory, checkpoint) pairs named by RUN_DIR... and --checkpoint..."""
    runs, checkpoints = args.run_dirs, args.checkpoint or ["best"]
    if len(runs) == 1:
        return [(runs[0], c) for c in checkpoints]
    if len(checkpoints) == 1:
        return [(r, checkpoints[0]) for r in runs]
    if len(checkpoints) != len(runs):
        raise UsageError(
            f"{len(runs)} run directories but {len(checkpoints)} --checkpoint values; give 1 or {len(runs)}"
        )
    return list(zip(runs, checkpoints, strict=True))


def _report(
    members: list[tuple[Path, str]],
    split: str | None,
    beam: int | None,
    device: str,
    as_json: bool,
    quantize: str = "none",
    precision: str = "fp32",
) -> None:
    """Score ``split``, print the scores, then record them (the caller holds the first run's lock)."""
    from seq2seq_rnn.evaluate import evaluate_run

    _print_and_record(evaluate_run(members, split, beam, device, quantize, precision), as_json)


def _print_and_record(result: Evaluation, as_json: bool) -> None:
    """Printed first: a score that cannot be recorded is still seen."""
    print(json.dumps(result.scores.as_dict()) if as_json else f"{result.title}: {result.scores.format()}")
    result.record()


def _translate_with_ray(args: argparse.Namespace) -> int:
    from seq2seq_rnn.integrations import require_ray

    if not args.input or args.output is None:
        raise UsageError("--ray translates files: give --input FILE... and --output DIR")
    if len(args.run_dirs) > 1 or len(args.checkpoint or []) > 1 or args.attention_plot is not None:
        raise UsageError("--ray decodes with one model and writes no attention plots")
    if args.precision != "fp32":
        raise UsageError("--ray decodes in fp32 (or --quantize int8); --precision is not passed to its actors yet")
    if args.actors < 1:
        raise UsageError(f"--actors must be at least 1, got {args.actors}")
    blocker = next((p for p in (args.output, *args.output.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        what = "is a file" if blocker == args.output else f"lies under {blocker}, which is a file"
        raise UsageError(
            f"--output {args.output} {what}; --ray writes one file per input into a folder: give a new or "
            "existing folder, e.g. --output translations"
        )
    require_ray("translate --ray")
    from seq2seq_rnn.integrations.ray import translate_files

    outs = translate_files(
        args.run_dirs[0],
        args.input,
        args.output,
        actors=args.actors,
        gpus_per_actor=args.gpus_per_actor,
        address=args.address,
        checkpoint=(args.checkpoint or ["best"])[0],
        device=args.device,
        quantize=args.quantize,
        beam_size=args.beam_size,
        batch_size=args.batch_size,
    )
    for out in outs:
        print(out)
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    if args.ray or args.input or args.output:
        if not args.ray:
            raise UsageError("--input/--output go with --ray (without it, translate reads stdin)")
        return _translate_with_ray(args)
    from seq2seq_rnn.cells.failure import naming_plugin_cells
    from seq2seq_rnn.inference.translator import Translator

    with contextlib.redirect_stdout(sys.stderr):  # stdout carries translations only, never what plugin cells print
        translator = Translator.load_ensemble(_members(args), args.device, args.quantize, args.precision)
    with naming_plugin_cells(translator.recipe.model, "while translating"):
        return _translate_stdin(translator, args)


def _translate_stdin(translator: Translator, args: argparse.Namespace) -> int:
    from seq2seq_rnn.inference.stream import StreamSettings, read_lines, translate_stream

    stdin = open(sys.stdin.fileno(), encoding="utf-8", errors="replace", newline="\n", closefd=False)  # noqa: SIM115
    if stdin.isatty() and args.attention_plot is None:
        from seq2seq_rnn.interactive import interact

        return interact(translator, args.beam_size, stdin, sys.stdout)
    settings = StreamSettings(args.beam_size, args.batch_size)
    if args.attention_plot is not None:
        from seq2seq_rnn.plot import translate_with_attention_plots

        inputs = [member[0] for member in _members(args)]
        outputs = translate_with_attention_plots(translator, read_lines(stdin), settings, args.attention_plot, inputs)
    else:
        signal.signal(signal.SIGTERM, _interrupt)  # like Ctrl-C: what was written stays, exit 130
        outputs = translate_stream(translator, read_lines(stdin), settings)
    out = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):  # a plugin cell's print() while decoding: not a translation
        for text in outputs:
            out.write(text)
            out.flush()  # batch by batch, in input order: an interrupted run keeps what it translated
    if args.attention_plot is not None:
        print(f"attention plots: {args.attention_plot}", file=sys.stderr)
    return 0


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def cmd_plot(args: argparse.Namespace) -> int:
    from seq2seq_rnn.plot import plot_runs
    from seq2seq_rnn.run.directory import RunDir

    if args.output is None:  # into the run: never through a link in it
        RunDir(args.run_dirs[0]).check_no_links()
    output = args.output or RunDir(args.run_dirs[0]).plots
    for path in plot_runs(args.run_dirs, output):
        print(path)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from seq2seq_rnn.export.exporter import export
    from seq2seq_rnn.run.directory import RunDir

    if args.output is None:  # into the run: never through a link in it
        RunDir(args.run_dir).check_no_links()
    output = args.output or args.run_dir / f"export-{args.format}"
    export(args.run_dir, output, args.format, args.checkpoint, args.quantize)
    print(f"exported to {output}; try: echo 'A sentence.' | python {output / 'translate.py'}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from seq2seq_rnn.cells.failure import naming_plugin_cells
    from seq2seq_rnn.evaluate import evaluate_pair
    from seq2seq_rnn.run.directory import RunDir

    if (args.src is None) != (args.ref is None):
        raise UsageError("--src and --ref go together")
    run = RunDir(args.run_dirs[0])
    with (
        run.lock("evaluate"),  # it records into RUN_DIR/scores.json: taken before decoding, to fail at once
        naming_plugin_cells(run.load_recipe().model, "while evaluating"),
    ):
        if args.src is None:
            _report(_members(args), args.split, args.beam_size, args.device, args.json, args.quantize, args.precision)
        else:
            result = evaluate_pair(
                _members(args), args.src, args.ref, args.beam_size, args.device, args.quantize, args.precision
            )
            _print_and_record(result, args.json)
    return 0


def cmd_average(args: argparse.Namespace) -> int:
    from seq2seq_rnn.inference.ensemble import average_checkpoints
    from seq2seq_rnn.run.directory import RunDir
    from seq2seq_rnn.run.outputs import check_output_file

    run = RunDir(args.run_dir)
    if (args.checkpoints is None) == (args.last is None):
        raise UsageError("give either --checkpoints FILE... or --last N")
    with run.lock("average"):
        paths = args.checkpoints or run.kept_checkpoints()[-args.last :]
        if args.last is not None and len(paths) < args.last:
            raise CheckpointError(
                f"{run.checkpoints} keeps {len(paths)} step checkpoints, fewer than --last {args.last} "
                "(train with train.keep_checkpoints >= N)"
            )
        output = args.output or run.averaged
        folder = check_output_file(output, "average --output", [run.path, *paths], reserved=_run_file)
        folder.write(output.name, lambda tmp: average_checkpoints(paths, tmp))
    print(f"averaged {len(paths)} checkpoints into {output}; use it with --checkpoint {output}")
    return 0


def _run_file(path: Path) -> str:
    """Why ``average`` may not write ``path``: a run's checkpoint name, or a file in a run's own folder."""
    from seq2seq_rnn.run.directory import MARKER_NAME

    if path.name in ("best.pt", "last.pt") or re.fullmatch(r"step-\d+\.pt", path.name):
        return "is a name training gives its checkpoints (best.pt, last.pt, step-*.pt)"
    parent = path.resolve().parent
    if (parent / MARKER_NAME).exists() or (parent / "recipe.yaml").exists():
        return f"lies in the run directory {parent} itself"
    return ""


def cmd_list_cells(args: argparse.Namespace) -> int:
    from seq2seq_rnn.components import CELLS

    entries = CELLS.entries()
    width = max(len(e.name) for e in entries)
    for entry in entries:
        print(f"{entry.name:<{width}}  {f'unusable: {entry.conflict}' if entry.conflict else entry.origin}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from seq2seq_rnn.config import load_recipe
    from seq2seq_rnn.integrations import require_ray

    recipe = load_recipe(args.recipe, args.overrides)
    require_ray("seq2seq-rnn tune")
    from seq2seq_rnn.integrations.ray.tune import format_table, run_sweep

    output = args.output_dir or Path("runs") / f"{recipe.name}-sweep"
    result = run_sweep(recipe, output, address=args.address, num_samples=args.num_samples)
    print(format_table(result, recipe.sweep.metric if recipe.sweep else "metric"))
    if result.best_recipe is None:
        print("no trial reported a score", file=sys.stderr)
        return 1
    print(f"best trial: {result.best_params}")
    print(f"best recipe: {result.best_recipe}  (reproduce: seq2seq-rnn train {result.best_recipe})")
    if result.best_run is not None:
        print(f"best run directory: {result.best_run}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from seq2seq_rnn.integrations.serving import run_serve

    return run_serve(args)


COMMANDS = {
    "train": cmd_train,
    "tune": cmd_tune,
    "translate": cmd_translate,
    "evaluate": cmd_evaluate,
    "average": cmd_average,
    "list-cells": cmd_list_cells,
    "plot": cmd_plot,
    "export": cmd_export,
    "serve": cmd_serve,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    if sys.stdout is None:  # started with stdout closed (``>&-``): Python leaves sys.stdout unset
        print("error: standard output is closed; redirect it instead (e.g. > out.txt or > /dev/null)", file=sys.stderr)
        return 2
    from seq2seq_rnn.registry import allow_plugins, import_modules

    imports = [str(Path(m).resolve()) if m.endswith(".py") else m for m in getattr(args, "imports", None) or []]
    try:
        with allow_plugins(imports):  # the user's consent: a recipe or run directory naming them imports them too
            args.imports = imports
            import_modules(imports, "--import")
            return COMMANDS[args.command](args)
    except KeyboardInterrupt:  # before training's own handler is installed (e.g. data preparation)
        print("interrupted", file=sys.stderr)
        return 130
    except TrainingInterrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return 130
    except Seq2SeqError as exc:
        print(f"error: {_printable(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (``translate … | head -1``): what it read was whole lines
        _discard_stdout()
        return 0
    except PluginExit as exc:  # plugin code exited where no component could be named
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # none of our commands exits: plugin or user code did (argparse ran above)
        print(f"error: {_foreign_exit(exc, args.command)}", file=sys.stderr)
        return 2


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _printable(message: str) -> str:
    """``message`` with control characters written as escapes: a value echoed in an error (a file name,
    a recipe key) must not move the cursor, clear the screen or retitle the terminal."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], message)


def _discard_stdout() -> None:
    """Point fd 1 at /dev/null, so that the interpreter's last flush of stdout fails no more."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _foreign_exit(exc: SystemExit, command: str) -> str:
    """Where a ``SystemExit`` raised inside a command came from: the innermost frame outside this package."""
    from seq2seq_rnn.errors import describe_exit

    package = str(Path(__file__).resolve().parent)
    where = "code outside seq2seq_rnn"
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if not str(Path(code.co_filename).resolve()).startswith(package):
            where = f"{code.co_filename}:{tb.tb_lineno} (in {code.co_name})"
        tb = tb.tb_next
    return (
        f"{where} raised {describe_exit(exc)} during `seq2seq-rnn {command}`; "
        "plugin code must raise an exception, not exit the process"
    )


if __name__ == "__main__":
    sys.exit(main())
