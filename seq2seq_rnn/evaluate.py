"""Score a trained run on a split of its recipe's data or on given files."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seq2seq_rnn.config import DecodeConfig
from seq2seq_rnn.data.corpus import load_split, read_lines
from seq2seq_rnn.errors import DataError, RunDirError, Seq2SeqError
from seq2seq_rnn.inference.translator import Translator
from seq2seq_rnn.metrics import Scores, score
from seq2seq_rnn.run.checkpoint import checkpoint_identity, weights_fingerprint, write_text_atomic
from seq2seq_rnn.run.directory import RunDir

log = logging.getLogger(__name__)


def evaluate_split(translator: Translator, split: str, beam_size: int | None = None) -> tuple[Scores, list[str]]:
    recipe = translator.recipe
    if split == "test" and recipe.data.test is None:
        raise DataError("the recipe has no data.test split; pass --split validation or --src/--ref files")
    corpus = load_split(recipe.data, split)
    return _score(translator, corpus.sources, corpus.targets, beam_size)


def evaluate_files(
    translator: Translator, src: Path, ref: Path, beam_size: int | None = None
) -> tuple[Scores, list[str]]:
    sources, refs = read_lines(src), read_lines(ref)
    if Path(src).samefile(ref):
        raise DataError(f"{src} is given as both --src and --ref; the references must be another file")
    if len(sources) != len(refs):
        raise DataError(f"{src} has {len(sources)} lines but {ref} has {len(refs)}; they must be parallel")
    if not any(line.strip() for line in sources) or not any(line.strip() for line in refs):
        empty = " and ".join(str(p) for p, lines in ((src, sources), (ref, refs)) if not any(x.strip() for x in lines))
        raise DataError(f"nothing to score: {empty} hold{'s' * (' and ' not in empty)} no sentences")
    return _score(translator, sources, refs, beam_size)


def _score(translator: Translator, sources: list[str], refs: list[str], beam: int | None) -> tuple[Scores, list[str]]:
    hyps = translator.translate(sources, beam_size=beam)
    ev = translator.recipe.evaluate
    return score(hyps, refs, ev.tokenize, ev.lowercase), hyps


def scores_key(what: str, checkpoint: str, decode: dict[str, Any]) -> str:
    """``scores.json`` key: what was scored, with which checkpoint(s) and decoding settings,
    so a score never replaces one of another checkpoint, split, file pair or beam."""
    settings = ", ".join(f"{k} {v}" for k, v in decode.items())
    return f"{what} | {checkpoint} | {settings}"


def read_scores(path: Path) -> dict[str, Any]:
    """The table in a ``scores.json``; {} when missing or unreadable (see :func:`record_scores`)."""
    try:
        table = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return table if isinstance(table, dict) else {}


def record_scores(run_dir: Path, key: str, scores: Scores, provenance: dict[str, Any]) -> Path:
    """Add a score with its provenance to RUN_DIR/scores.json, atomically.

    The caller holds the run's writer lock. A file that is not a JSON object (damaged
    by hand or by another tool) is kept aside as ``scores.json.corrupt``, never dropped.
    """
    path = RunDir(Path(run_dir)).scores
    table: dict[str, Any] = {}
    if path.is_file():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError):
            loaded = None
        if isinstance(loaded, dict):
            table = loaded
        else:
            aside = path.with_name(path.name + ".corrupt")
            os.replace(path, aside)
            log.warning("%s was not a JSON object of scores; kept it as %s and started a new one", path, aside)
    table[key] = {**scores.as_dict(), **provenance}
    write_text_atomic(path, json.dumps(table, indent=2) + "\n")
    return path


def member_identity(run_dir: Path, checkpoint: str) -> dict[str, Any]:
    """The step and weights fingerprint of ``checkpoint`` (best, last or a file) of a run."""
    return checkpoint_identity(RunDir(Path(run_dir)).checkpoint(checkpoint))


def score_is_current(entry: dict[str, Any], run_dir: Path, fingerprints: dict[Path, str | None]) -> bool | None:
    """Whether the checkpoint(s) a ``scores.json`` entry of ``run_dir`` names still hold the weights
    it scored: None for an entry from before scores carried fingerprints (unknown checkpoint).
    The first member is the run holding the scores.json (wherever it was moved since).
    ``fingerprints`` caches the current fingerprint per checkpoint file (None: gone)."""
    members = entry.get("members")
    if not isinstance(members, list) or not members:
        return None
    for i, member in enumerate(members):
        if not isinstance(member, dict) or not isinstance(member.get("fingerprint"), str):
            return None
        run = Path(run_dir) if i == 0 else Path(str(member.get("run")))
        try:
            path = RunDir(run).checkpoint(str(member.get("checkpoint")))
        except Seq2SeqError:
            return False  # e.g. best.pt lost after validations
        if path not in fingerprints:
            try:
                fingerprints[path] = weights_fingerprint(path)
            except OSError:
                fingerprints[path] = None
        if fingerprints[path] != member["fingerprint"]:
            return False
    return True


def record_evaluation(
    members: list[tuple[Path, str]],
    what: str,
    extra: dict[str, str],
    dec: DecodeConfig,
    beam: int,
    scores: Scores,
    quantize: str = "none",
    precision: str = "fp32",
) -> None:
    """Record ``scores`` in the first member's scores.json with their provenance: what was scored,
    with which checkpoint(s) (``members``: (run directory, checkpoint) pairs), decoding and weights.
    The caller holds the first run's writer lock."""
    decode: dict[str, object] = {
        "beam": beam,
        "length_penalty": dec.length_penalty,
        "max_length": f"{dec.max_length_ratio}x+{dec.max_length_offset}",
    }
    if precision != "fp32":  # the weights decoded with: int8, bf16 or int8+bf16
        decode["weights"] = precision
    if len(members) == 1:
        checkpoint, key_checkpoint = members[0][1], members[0][1]
    else:
        checkpoint = f"ensemble of {len(members)}"
        key_checkpoint = "ensemble " + " + ".join(f"{r}:{c}" for r, c in members)
    identities = [member_identity(r, c) for r, c in members]
    provenance = {
        **extra,
        "checkpoint": checkpoint,
        # the weights scored: the card leaves out a score whose best.pt (or last.pt) was replaced since
        "step": identities[0]["step"] if len(members) == 1 else None,
        "fingerprint": identities[0]["fingerprint"] if len(members) == 1 else None,
        "members": [{"run": str(r), "checkpoint": c, **i} for (r, c), i in zip(members, identities, strict=True)],
        "beam_size": beam,
        "length_penalty": dec.length_penalty,
        "max_length_ratio": dec.max_length_ratio,
        "max_length_offset": dec.max_length_offset,
        "quantize": quantize,
        "precision": precision,
    }
    try:
        record_scores(members[0][0], scores_key(what, key_checkpoint, decode), scores, provenance)
    except OSError as exc:
        raise RunDirError(
            f"the scores printed above were not recorded in {RunDir(members[0][0]).scores}: {exc}"
        ) from None


@dataclass(frozen=True)
class Evaluation:
    """Scores of a run (or an ensemble), with what ``record`` needs to file them in scores.json."""

    title: str  # how the scores are shown, e.g. "test (best checkpoint, beam 5)"
    scores: Scores
    members: list[tuple[Path, str]]
    what: str  # the scores.json key's first part: a split, or "SRC -> REF"
    extra: dict[str, str]
    decode: DecodeConfig
    beam: int
    quantize: str = "none"
    precision: str = "fp32"  # what the model computed in (Translator.precision)

    def record(self) -> None:
        """Record the scores in the first member's scores.json (the caller holds its writer lock)."""
        record_evaluation(
            self.members, self.what, self.extra, self.decode, self.beam, self.scores, self.quantize, self.precision
        )


def evaluate_run(
    members: list[tuple[Path, str]],
    split: str | None = None,
    beam_size: int | None = None,
    device: str = "auto",
    quantize: str = "none",
    precision: str = "fp32",
) -> Evaluation:
    """Load ``members`` ((run directory, checkpoint) pairs) and score ``split``
    (default: the first run's ``evaluate.split``)."""
    translator = Translator.load_ensemble(members, device, quantize, precision)
    split = split or translator.recipe.evaluate.split
    scores, _ = evaluate_split(translator, split, beam_size)
    beam = beam_size or translator.recipe.decode.beam_size
    what = members[0][1] if len(members) == 1 else f"ensemble of {len(members)}"
    weights = "" if translator.precision == "fp32" else f", {translator.precision}"
    title = f"{split} ({what} checkpoint, beam {beam}{weights})"
    decode = translator.recipe.decode
    return Evaluation(title, scores, members, split, {"split": split}, decode, beam, quantize, translator.precision)


def evaluate_pair(
    members: list[tuple[Path, str]],
    src: Path,
    ref: Path,
    beam_size: int | None = None,
    device: str = "auto",
    quantize: str = "none",
    precision: str = "fp32",
) -> Evaluation:
    """Load ``members`` and score the translation of ``src`` against ``ref``."""
    translator = Translator.load_ensemble(members, device, quantize, precision)
    scores, _ = evaluate_files(translator, src, ref, beam_size)
    source, reference = str(Path(src).resolve()), str(Path(ref).resolve())
    beam = beam_size or translator.recipe.decode.beam_size
    extra = {"source": source, "reference": reference}
    what = f"{source} -> {reference}"
    decode = translator.recipe.decode
    return Evaluation(f"{src}", scores, members, what, extra, decode, beam, quantize, translator.precision)
