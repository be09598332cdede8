"""The model card: RUN_DIR/README.md, written at the end of ``seq2seq-rnn train``.

Everything on it is read back from the run directory (resolved recipe,
checkpoints, metrics.jsonl, scores.json, data.json), so ``write_model_card``
can also be called on an older run.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shlex
from pathlib import Path
from typing import Any

import torch

from seq2seq_rnn.config import Recipe, SplitConfig
from seq2seq_rnn.errors import CheckpointError
from seq2seq_rnn.evaluate import read_scores, score_is_current
from seq2seq_rnn.run.checkpoint import load_checkpoint, write_text_atomic
from seq2seq_rnn.run.directory import RunDir

log = logging.getLogger(__name__)


def hardware() -> str:
    """E.g. ``CPU: AMD EPYC 7B13 (2 cores), torch 2.13.0`` or the GPU's name."""
    parts = []
    if torch.cuda.is_available():
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        parts.append(f"GPU: {torch.cuda.device_count()}× {', '.join(names)}")
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts.append(f"CPU: {cpu} ({cores} cores available)")
    parts.append(f"torch {torch.__version__}, Python {platform.python_version()}, {platform.system()}")
    return "; ".join(parts)


def _split_files(spec: SplitConfig | None) -> list[str]:
    if spec is None:
        return []
    out = []
    for value in (spec.source, spec.target, spec.path):
        if value is None:
            continue
        path = Path(value)
        size = f"{path.stat().st_size:,} bytes" if path.is_file() else "not found now"
        out.append(f"`{value}` ({size})")
    if spec.split is not None:
        out.append(f"hub split `{spec.split}`")
    if spec.limit is not None:
        out.append(f"first {spec.limit:,} pairs")
    return out


def _pair_counts(run: RunDir) -> str:
    """``N training pairs (M kept, D dropped as longer than L subwords), V validation pairs`` from data.json."""
    counts = run.read_data_counts()
    if "train_pairs" not in counts:
        return ""
    text = f"{counts['train_pairs']:,} training pairs"
    if counts.get("train_dropped"):
        text += (
            f" ({counts['train_kept']:,} kept, {counts['train_dropped']:,} dropped as longer than "
            f"{counts['max_length']} subwords)"
        )
    return text + f", {counts.get('validation_pairs', 0):,} validation pairs"


def _progress(run: RunDir) -> dict[str, Any]:
    try:
        return dict(load_checkpoint(run.last).get("progress", {}))
    except CheckpointError:
        return {}


def _parameters(run: RunDir, recipe: Recipe) -> str:
    from seq2seq_rnn.inference.translator import Translator

    try:
        model = Translator.load(run.path, "last", "cpu").model
    except Exception as exc:  # noqa: BLE001 - a card must not fail on one missing figure
        return f"unknown ({type(exc).__name__})"
    return f"{sum(p.numel() for p in model.parameters()):,}"


def _model_summary(recipe: Recipe) -> list[str]:
    m = recipe.model
    enc, dec = m.encoder, m.decoder
    return [
        f"- encoder: {enc.layers}-layer {'bidirectional ' if enc.bidirectional else ''}{enc.cell}, "
        f"hidden {enc.hidden_size}, embeddings {enc.embedding_size}, dropout {enc.dropout}",
        f"- decoder: {dec.layers}-layer {dec.cell}, hidden {dec.hidden_size}, embeddings {dec.embedding_size}, "
        f"input feeding {dec.input_feeding}, tied embeddings {dec.tie_embeddings}",
        f"- attention: {m.attention.type}",
        f"- tokenizer: sentencepiece {recipe.tokenizer.model_type}, {recipe.tokenizer.vocab_size} subwords, "
        f"{'joint' if recipe.tokenizer.joint else 'separate'}",
        f"- training: {recipe.train.optimizer.name} lr {recipe.train.optimizer.lr}, "
        f"{recipe.train.batch_tokens} tokens per batch, label smoothing {recipe.train.label_smoothing}, "
        f"max {recipe.train.max_steps or '∞'} steps / {recipe.train.max_epochs} epochs, seed {recipe.seed}",
        f"- decoding: beam {recipe.decode.beam_size}, length penalty {recipe.decode.length_penalty}",
    ]


def _cell(signature: str) -> str:
    """A signature as a table cell: code, with its ``|`` escaped."""
    return f"`{signature}`".replace("|", "\\|") if signature else ""


def _scores(run: RunDir, metrics: list[dict[str, Any]], beam: int) -> list[str]:
    lines = ["| what | BLEU | chrF | sentences | how | signatures |", "|---|---|---|---|---|---|"]
    validations = [m for m in metrics if _number(m.get("val_bleu"))]
    if validations:
        best = max(validations, key=lambda m: m["val_bleu"])
        lines.append(
            f"| best validation (step {best['step']}) | {best['val_bleu']:.2f} "
            f"| {best['val_chrf'] if _number(best.get('val_chrf')) else float('nan'):.2f}"
            f" | | beam {beam} (train.validation_beam_size) | {_cell(best.get('bleu_signature', ''))} |"
        )
    skipped, replaced, unknown = [], 0, 0
    fingerprints: dict[Path, str | None] = {}
    for name, s in read_scores(run.scores).items():
        if not isinstance(s, dict) or not _number(s.get("bleu")) or not _number(s.get("chrf")):
            skipped.append(name)  # edited by hand or by another tool: the card is still written
            continue
        current = score_is_current(s, run.path, fingerprints)
        if current is None:  # recorded before scores named their weights
            unknown += 1
            continue
        if not current:  # its best.pt/last.pt was replaced since (training continued)
            replaced += 1
            continue
        step = f", step {s['step']}" if isinstance(s.get("step"), int) else ""
        how = f"{_text(s.get('checkpoint', '?'))} checkpoint, beam {_text(s.get('beam_size', '?'))}{step}"
        lines.append(
            f"| {_text(s.get('split', name))} | {s['bleu']:.2f} | {s['chrf']:.2f} | {_text(s.get('n', ''))} | {how} "
            f"| {_cell(_text(s.get('bleu_signature', '')))}<br>{_cell(_text(s.get('chrf_signature', '')))} |"
        )
    if skipped:
        log.warning("%s: %d entries without numeric bleu/chrf left out of the model card", run.scores, len(skipped))
    out = lines if len(lines) > 2 else ["No scores recorded yet."]
    notes = []
    if replaced:
        notes.append(
            f"{replaced} score(s) of scores.json are of weights that are no longer in the checkpoint they were "
            "scored as (training continued and wrote a new one): not shown; evaluate again to score the new one."
        )
    if unknown:
        notes.append(
            f"{unknown} score(s) of scores.json of an unknown checkpoint (recorded before scores carried their "
            "checkpoint's step and fingerprint): not shown."
        )
    if skipped:
        notes.append(f"{len(skipped)} entries of scores.json without numeric scores are not shown.")
    return out + [f"\n{note}" for note in notes]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: Any) -> str:
    """A table cell from a value that should be text: one line, ``|`` escaped."""
    text = value if isinstance(value, str | int | float) else json.dumps(value)
    return str(text).replace("\n", " ").replace("|", "\\|")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def model_card(run_dir: Path, command: list[str] | None = None) -> str:
    """The Markdown text of the card for ``run_dir``."""
    run = RunDir(Path(run_dir))
    recipe = run.load_recipe()
    metrics = run.read_metrics()
    progress = _progress(run)
    data = recipe.data
    train_steps = [m for m in metrics if "loss" in m]
    out = [f"# {recipe.name}: {data.source_lang}→{data.target_lang}", ""]
    out += [
        "A recurrent encoder–decoder translation model trained with seq2seq_rnn. "
        "This card is generated from the run directory.",
        "",
        "## Data",
        "",
        f"format `{data.format}`{f', dataset `{data.hub_name}`' if data.hub_name else ''}; "
        f"pairs longer than {data.max_length} subwords are dropped.",
        "",
    ]
    for split in ("train", "validation", "test"):
        files = _split_files(getattr(data, split))
        if files:
            out.append(f"- {split}: " + ", ".join(files))
    counts = _pair_counts(run)
    if counts:
        out.append(f"- as loaded: {counts}")
    out += ["", "## Model", "", f"- parameters: {_parameters(run, recipe)}", *_model_summary(recipe)]
    out += ["", "The resolved recipe (every default filled in) is [recipe.yaml](recipe.yaml).", ""]
    out += ["## Training", ""]
    if progress:
        out.append(
            f"- {progress.get('step', 0):,} steps, {progress.get('epoch', 0)} epochs, "
            f"{_duration(float(progress.get('train_seconds', 0.0)))} of training (excluding validation)"
        )
        out.append(f"- best validation BLEU {progress.get('best_bleu', -1):.2f} at step {progress.get('best_step', 0)}")
        if progress.get("nonfinite_steps"):
            out.append(f"- {progress['nonfinite_steps']} updates skipped for non-finite loss or gradients")
    if train_steps:
        first, last = train_steps[0], train_steps[-1]
        out.append(
            f"- training loss {first['loss']:.3f} (step {first['step']}) → {last['loss']:.3f} (step {last['step']})"
        )
        out.append(f"- last logged speed: {last.get('tokens_per_sec', 0):,.0f} target tokens/s")
    out.append(
        f"- hardware: {hardware()}; train.threads {recipe.train.threads or 'default'}, device {recipe.train.device}"
    )
    out += ["", "## Scores", "", *_scores(run, metrics, recipe.train.validation_beam_size), ""]
    out += ["## Reproduce", "", "```bash"]
    if command:
        out.append(shlex.join(["seq2seq-rnn", *command]))
    out.append(f"seq2seq-rnn train {shlex.quote(str(run.recipe))} --output-dir NEW_RUN_DIR   # the resolved recipe")
    out.append(f"seq2seq-rnn evaluate {shlex.quote(str(run.path))} --split test")
    out.append(f"echo 'A sentence.' | seq2seq-rnn translate {shlex.quote(str(run.path))}")
    out += ["```", ""]
    return "\n".join(out)


def write_model_card(run_dir: Path, command: list[str] | None = None) -> Path:
    """Write RUN_DIR/README.md; returns its path."""
    path = RunDir(Path(run_dir)).model_card
    write_text_atomic(path, model_card(run_dir, command))
    return path
