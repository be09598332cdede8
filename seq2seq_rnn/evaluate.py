"""Score a trained run on a split of its recipe's data or on given files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seq2seq_rnn.data.corpus import load_split, read_lines
from seq2seq_rnn.errors import DataError
from seq2seq_rnn.metrics import Scores, score
from seq2seq_rnn.translator import Translator


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
    if len(sources) != len(refs):
        raise DataError(f"{src} has {len(sources)} lines but {ref} has {len(refs)}; they must be parallel")
    return _score(translator, sources, refs, beam_size)


def _score(translator: Translator, sources: list[str], refs: list[str], beam: int | None) -> tuple[Scores, list[str]]:
    hyps = translator.translate(sources, beam_size=beam)
    ev = translator.recipe.evaluate
    return score(hyps, refs, ev.tokenize, ev.lowercase), hyps


def record_scores(run_dir: Path, name: str, scores: Scores, provenance: dict[str, Any]) -> None:
    """Keep every reported score with its provenance in RUN_DIR/scores.json."""
    path = Path(run_dir) / "scores.json"
    table = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    table[name] = {**scores.as_dict(), **provenance}
    path.write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
