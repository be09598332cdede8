"""Malformed recipes are refused before any work starts, with an actionable message.

Each case mutates recipes/tiny.yaml (or replaces its text, or adds ``--set``
overrides) and runs ``seq2seq-rnn train`` in-process. Every one must exit with
status 2, print no traceback, name the dotted path at fault and what is allowed,
and leave no run directory behind.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from seq2seq_rnn.cli import main
from seq2seq_rnn.config import resolve_paths
from tests.helpers import TINY

Raw = dict[str, Any]
PLUGIN_CELL = Path(__file__).parent / "data" / "malformed_plugin.py"


@dataclass
class Case:
    id: str
    expect: list[str]  # fragments of the message, e.g. the dotted path and the valid choices
    edit: Callable[[Raw], Any] | None = None  # mutate (or return a replacement of) the parsed recipe
    text: str | None = None  # the recipe file's text instead of a YAML dump
    overrides: list[str] = field(default_factory=list)


def put(path: str, value: Any) -> Callable[[Raw], None]:
    def edit(raw: Raw) -> None:
        *parents, last = path.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    return edit


def rename(path: str, new: str) -> Callable[[Raw], None]:
    def edit(raw: Raw) -> None:
        *parents, last = path.split(".")
        node = raw
        for part in parents:
            node = node[part]
        node[new] = node.pop(last)

    return edit


def drop(path: str) -> Callable[[Raw], None]:
    def edit(raw: Raw) -> None:
        *parents, last = path.split(".")
        node = raw
        for part in parents:
            node = node[part]
        del node[last]

    return edit


def both(*edits: Callable[[Raw], Any]) -> Callable[[Raw], None]:
    def edit(raw: Raw) -> None:
        for e in edits:
            e(raw)

    return edit


CASES = [
    # ---- typos, at every nesting level (with a "did you mean" and the valid keys)
    Case("typo-top", ["modle: unknown key", "did you mean 'model'", "Valid keys:"], rename("model", "modle")),
    Case("typo-data", ["data.source_lnag: unknown key", "source_lang"], rename("data.source_lang", "source_lnag")),
    Case("typo-split", ["data.train.limt: unknown key", "did you mean 'limit'"], rename("data.train.limit", "limt")),
    Case("typo-tokenizer", ["tokenizer.vocab_sise: unknown key", "vocab_size"], put("tokenizer.vocab_sise", 100)),
    Case("typo-encoder", ["model.encoder.hiden_size: unknown key", "hidden_size"], put("model.encoder.hiden_size", 8)),
    Case(
        "typo-decoder", ["model.decoder.input_feed: unknown key", "input_feeding"], put("model.decoder.input_feed", 1)
    ),
    Case("typo-attention", ["model.attention.typ: unknown key", "type"], rename("model.attention.type", "typ")),
    Case("typo-init", ["model.init.uniformm: unknown key", "uniform"], put("model.init.uniformm", 0.1)),
    Case(
        "typo-optimizer", ["train.optimizer.learning_rate: unknown key", "lr"], put("train.optimizer.learning_rate", 1)
    ),
    Case("typo-scheduler", ["train.scheduler.warmup: unknown key", "warmup_steps"], put("train.scheduler.warmup", 5)),
    Case("typo-decode", ["decode.beam: unknown key", "beam_size"], put("decode.beam", 4)),
    Case("typo-evaluate", ["evaluate.tokenise: unknown key", "tokenize"], put("evaluate.tokenise", "13a")),
    # ---- wrong types (strict: no silent coercion of "100" or "yes")
    Case("type-str-for-int", ["train.max_steps", "valid integer", "'100'"], put("train.max_steps", "100")),
    Case(
        "type-str-for-bool", ["model.encoder.bidirectional", "valid boolean"], put("model.encoder.bidirectional", "yes")
    ),
    Case("type-list-for-float", ["train.optimizer.lr", "valid number"], put("train.optimizer.lr", [0.1])),
    Case("type-int-for-section", ["model.encoder", "EncoderConfig"], put("model.encoder", 5)),
    Case("type-str-for-split", ["data.train", "SplitConfig"], put("data.train", "train.de")),
    Case("type-float-seed", ["seed", "valid integer"], put("seed", 1.5)),
    Case(
        "type-decoder-bidirectional", ["model.decoder.bidirectional", "False"], put("model.decoder.bidirectional", True)
    ),
    # ---- out-of-range numbers
    Case("range-dropout", ["model.encoder.dropout", "less than 1"], put("model.encoder.dropout", 1.5)),
    Case("range-lr", ["train.optimizer.lr", "greater than 0"], put("train.optimizer.lr", 0.0)),
    Case("range-vocab", ["tokenizer.vocab_size", "greater than or equal to 16"], put("tokenizer.vocab_size", 3)),
    Case("range-beam", ["decode.beam_size", "greater than or equal to 1"], put("decode.beam_size", 0)),
    Case("range-betas", ["train.optimizer.betas", "at least 2"], put("train.optimizer.betas", [0.9])),
    Case("range-layers", ["model.encoder.layers", "greater than or equal to 1"], put("model.encoder.layers", 0)),
    Case("range-limit", ["data.train.limit", "greater than or equal to 1"], put("data.train.limit", -5)),
    # ---- unknown components: every valid name is listed
    Case("unknown-cell", ["model.encoder.cell", "lstmm", "gru", "lstm", "rnn"], put("model.encoder.cell", "lstmm")),
    Case(
        "unknown-attention", ["model.attention.type", "luong", "bahdanau", "dot"], put("model.attention.type", "luong")
    ),
    Case(
        "unknown-optimizer",
        ["train.optimizer.name", "'adam', 'adamw' or 'sgd'"],
        put("train.optimizer.name", "adagrad"),
    ),
    Case("unknown-format", ["data.format", "'text', 'tsv', 'jsonl', 'parquet' or 'hub'"], put("data.format", "csv")),
    Case("unknown-device", ["train.device", "'auto', 'cpu' or 'cuda'"], put("train.device", "tpu")),
    Case(
        "unknown-model-type", ["tokenizer.model_type", "'bpe' or 'unigram'"], put("tokenizer.model_type", "wordpiece")
    ),
    Case(
        "unknown-cell-option",
        ["model.encoder.cell_options", "forget_bias", "Accepted options"],
        put("model.encoder.cell_options", {"forget_bias": 2}),
    ),
    # ---- contradictory settings
    Case(
        "tied-embeddings-sizes",
        ["decoder.tie_embeddings", "decoder.embedding_size == decoder.hidden_size", "32 and 64"],
        both(put("model.decoder.embedding_size", 32), put("model.decoder.tie_embeddings", True)),
    ),
    Case(
        "dot-attention-sizes",
        ["attention.type 'dot'", "decoder.hidden_size (64)", "(128"],
        put("model.attention.type", "dot"),
    ),
    Case(
        "attention-size-unused",
        ["attention.hidden_size", "only used by additive attention"],
        both(put("model.attention.type", "general"), put("model.attention.hidden_size", 32)),
    ),
    Case("min-lr-above-lr", ["scheduler.min_lr (0.1)", "optimizer.lr (0.003)"], put("train.scheduler.min_lr", 0.1)),
    Case("same-languages", ["source_lang and target_lang must differ"], put("data.target_lang", "de")),
    Case(
        "sgd-with-betas",
        ["train.optimizer", "betas are only used by the adam and adamw"],
        both(put("train.optimizer.name", "sgd"), put("train.optimizer.betas", [0.8, 0.9])),
    ),
    Case("text-with-path", ["train.path is not used when data.format is 'text'"], put("data.train.path", "x.tsv")),
    Case("tsv-without-path", ["train.path is required when data.format is 'tsv'"], put("data.format", "tsv")),
    Case(
        "hub-name-with-text",
        ["hub_name/hub_config are only used when data.format is 'hub'"],
        put("data.hub_name", "wmt"),
    ),
    Case("unknown-evaluate-split", ["evaluate.split", "'validation' or 'test'"], put("evaluate.split", "dev")),
    Case("range-workers", ["scaling.workers", "greater than or equal to 1"], put("scaling.workers", 0)),
    Case("empty-sweep-space", ["sweep.space", "at least 1 item"], put("sweep", {"space": {}})),
    Case(
        "plugin-not-importable", ["plugins: cannot import 'no_such_cells_xyz'"], put("plugins", ["no_such_cells_xyz"])
    ),
    Case(
        "typed-cell-option",
        ["model.encoder.cell_options.eps: Input should be greater than 0", "(got -1)"],
        both(
            put("plugins", [str(PLUGIN_CELL)]),
            put("model.encoder.cell", "test_malformed_layernorm"),
            put("model.encoder.cell_options", {"eps": -1}),
        ),
    ),
    Case("fp16-on-cpu", ["amp 'fp16' needs a CUDA device"], both(put("train.amp", "fp16"), put("train.device", "cpu"))),
    Case("missing-data", ["data: Field required"], drop("data")),
    Case("missing-target-lang", ["data.target_lang: Field required"], drop("data.target_lang")),
    # ---- the file itself
    Case("invalid-yaml", ["invalid YAML", "line"], text="model: {encoder: [\n"),
    Case("tab-indented-yaml", ["invalid YAML"], text="model:\n\tencoder: {}\n"),
    Case("empty-file", ["the recipe is empty"], text=""),
    Case("only-comments", ["the recipe is empty"], text="# nothing here\n"),
    Case("top-level-list", ["a recipe must be a mapping of sections, got list"], edit=lambda raw: [raw]),
    Case("top-level-scalar", ["a recipe must be a mapping of sections, got str"], text="tiny\n"),
    # ---- --set overrides
    Case("set-without-equals", ["--set 'train.max_steps'", "expected KEY=VALUE"], overrides=["train.max_steps"]),
    Case("set-empty-part", ["--set 'train..max_steps=3'", "expected KEY=VALUE"], overrides=["train..max_steps=3"]),
    Case(
        "set-unknown-key", ["train.max_stepz: unknown key", "did you mean 'max_steps'"], overrides=["train.max_stepz=3"]
    ),
    Case("set-unknown-section", ["trian: unknown key", "did you mean 'train'"], overrides=["trian.max_steps=3"]),
    Case("set-wrong-type", ["train.max_steps", "valid integer", "'many'"], overrides=["train.max_steps=many"]),
    Case("set-into-a-value", ["--set 'seed.value=3'", "seed is a value, not a section"], overrides=["seed.value=3"]),
    Case(
        "set-invalid-yaml", ["--set train.optimizer.betas", "invalid YAML"], overrides=["train.optimizer.betas=[0.9,"]
    ),
]


def tiny_raw() -> Raw:
    raw = yaml.safe_load(TINY.read_text(encoding="utf-8"))
    return resolve_paths(raw, TINY.parent)


def write_case(case: Case, folder: Path) -> Path:
    path = folder / "recipe.yaml"
    if case.text is not None:
        path.write_text(case.text, encoding="utf-8")
        return path
    raw = copy.deepcopy(tiny_raw())
    replaced = case.edit(raw) if case.edit else None
    path.write_text(yaml.safe_dump(raw if replaced is None else replaced, sort_keys=False), encoding="utf-8")
    return path


SECTIONS = ["data", "tokenizer", "model", "train", "decode", "evaluate", "scaling", "sweep", "plugins"]


def test_the_cases_are_distinct_effective_and_cover_every_section():
    assert len({c.id for c in CASES}) == len(CASES)
    valid = tiny_raw()
    for case in CASES:
        assert case.expect, f"{case.id}: expects nothing"
        if case.edit is not None:
            raw = copy.deepcopy(valid)
            replaced = case.edit(raw)
            assert (raw if replaced is None else replaced) != valid, f"{case.id}: the edit changes nothing"
    covered = {s for c in CASES for fragment in c.expect for s in SECTIONS if fragment.startswith((f"{s}.", f"{s}:"))}
    assert covered == set(SECTIONS), f"no malformed case for {sorted(set(SECTIONS) - covered)}"


def test_the_unmodified_recipe_is_valid(tmp_path):
    from seq2seq_rnn.config import load_recipe

    load_recipe(write_case(Case("valid", [], edit=lambda raw: None), tmp_path))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_recipe_is_refused_before_any_work(case, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SEQ2SEQ_RNN_ALLOW_PLUGINS", f"no_such_cells_xyz,{PLUGIN_CELL}")  # the plugin cases' consent
    recipe = write_case(case, tmp_path)
    run = tmp_path / "run"
    args = ["train", str(recipe), "--output-dir", str(run), "--no-test"]
    for item in case.overrides:
        args += ["--set", item]
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert err.startswith("error: "), err
    for fragment in case.expect:
        assert fragment in err, f"{fragment!r} not in:\n{err}"
    assert not run.exists(), "a run directory was created for a refused recipe"


def test_missing_recipe_file(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.yaml"), "--output-dir", str(tmp_path / "run")]) == 2
    assert "nope.yaml: no such recipe file" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
