"""Recipes and their error messages are bounded (issue #10, class 3), and random recipes
generated from the schema are either valid or refused with a ConfigError (exit 2), never a
traceback."""

from __future__ import annotations

import math
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from seq2seq_rnn.cli import main
from seq2seq_rnn.config import Recipe, load_recipe, parse_yaml, resolve_paths, validate_recipe
from seq2seq_rnn.errors import ConfigError, PluginError, Seq2SeqError
from tests.helpers import ROOT, TINY, cli_env

BOMB = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(
            f"{n}: &{n} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]"
            for p, n in zip("abcdefgh", "bcdefghi", strict=True)
        ),
        "data: *i",
    ]
)


def tiny_raw() -> dict[str, Any]:
    return resolve_paths(yaml.safe_load(TINY.read_text(encoding="utf-8")), TINY.parent)


# ------------------------------------------------------------ YAML size and aliases
def test_a_1kb_alias_bomb_fails_fast_with_a_config_error(tmp_path):
    """Today: 552 s and a MemoryError (the error message echoed the expanded input)."""
    assert len(BOMB) < 1024
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(BOMB)
    with pytest.raises(ConfigError, match="expands to more than"):
        load_recipe(recipe)
    proc = subprocess.run(
        [sys.executable, "-m", "seq2seq_rnn.cli", "train", str(recipe), "--output-dir", str(tmp_path / "run")],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "expands to more than" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr) < 1000


def test_aliases_within_bounds_still_work():
    raw = parse_yaml("enc: &e {hidden_size: 8, layers: 1}\nmodel: {encoder: *e}\n", "test")
    assert raw["model"]["encoder"] == {"hidden_size": 8, "layers": 1}


@pytest.mark.parametrize(
    "text",
    [
        "a: &a [*a]",  # an alias inside its own anchor
        "[" * 5000 + "]" * 5000,  # deep nesting
        "x: 1\n" * 300_000,  # large
    ],
    ids=["cycle", "deep", "large"],
)
def test_hostile_documents_are_config_errors(text):
    with pytest.raises(ConfigError) as caught:
        parse_yaml(text, "recipe.yaml")
    assert len(str(caught.value)) < 1000


def test_echoed_inputs_in_messages_are_truncated():
    raw = tiny_raw()
    raw["seed"] = "x" * 100_000
    raw["name"] = list(range(100_000))
    raw["model"]["encoder"]["cell"] = "q" * 100_000
    raw["y" * 10_000] = 1
    with pytest.raises(ConfigError) as caught:
        validate_recipe(raw, "recipe.yaml")
    message = str(caught.value)
    assert "seed" in message and "name" in message and "model.encoder.cell" in message
    assert len(message) < 4000, len(message)


# ------------------------------------------------------------ numeric bounds
BAD_NUMBERS = [
    ("train.optimizer.lr", ".inf", "finite"),
    ("train.optimizer.lr", ".nan", "finite"),
    ("train.optimizer.lr", "1e9", "less than or equal to 10"),
    ("seed", "-1", "greater than or equal to 0"),
    ("seed", str(2**32), "less than or equal to 4294967295"),
    ("tokenizer.vocab_size", str(10**12), "less than or equal to 1000000"),
    ("decode.max_length_offset", str(10**12), "less than or equal to 10000"),
    ("decode.max_length_ratio", ".inf", "finite"),
    ("decode.length_penalty", ".nan", "finite"),
    ("decode.beam_size", str(10**6), "less than or equal to 1024"),
    ("model.encoder.hidden_size", str(10**9), "less than or equal to 16384"),
    ("model.decoder.layers", str(10**6), "less than or equal to 64"),
    ("model.init.forget_bias", ".inf", "finite"),
    ("model.init.uniform", ".inf", "finite"),
    ("train.optimizer.betas", "[0.9, 1.5]", "less than 1"),
    ("train.batch_tokens", str(10**15), "less than or equal to"),
    ("train.max_minutes", ".inf", "finite"),
    ("train.clip_norm", ".inf", "finite"),
    ("train.max_steps", str(10**30), "less than or equal to"),
    ("data.max_length", str(10**9), "less than or equal to 10000"),
    ("data.train.limit", str(10**30), "less than or equal to"),
    ("scaling.gpus_per_worker", ".inf", "finite"),
]


@pytest.mark.parametrize(("key", "value", "expect"), BAD_NUMBERS, ids=[f"{k}={v}" for k, v, _ in BAD_NUMBERS])
def test_numeric_fields_refuse_inf_nan_and_absurd_values(key, value, expect):
    with pytest.raises(ConfigError) as caught:
        load_recipe(TINY, [f"{key}={value}"])
    message = str(caught.value)
    assert key in message and expect in message, message


def test_sizes_that_multiply_into_an_impossible_model_are_refused_at_validation():
    sizes = {f"model.{side}.{k}": 16_384 for side in ("encoder", "decoder") for k in ("hidden_size", "embedding_size")}
    overrides = [f"{k}={v}" for k, v in sizes.items()] + ["model.encoder.layers=64", "model.decoder.layers=64"]
    with pytest.raises(ConfigError, match="recurrent parameters"):
        load_recipe(TINY, overrides)


@pytest.mark.parametrize("name", ["../../elsewhere", "a/b", "..", "", "x" * 101, "tab\there"])
def test_a_recipe_name_is_one_plain_folder_name(name):
    """``name`` becomes the default run folder runs/<name>: it may not climb out of runs/."""
    raw = tiny_raw()
    raw["name"] = name
    with pytest.raises(ConfigError, match="name: must be 1-100 printable characters"):
        validate_recipe(raw)


def test_the_cli_refuses_an_infinite_learning_rate_with_exit_2(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(TINY), "--output-dir", str(run), "--set", "train.optimizer.lr=.inf"]) == 2
    err = capsys.readouterr().err
    assert "train.optimizer.lr" in err and "Traceback" not in err and not run.exists()


# ------------------------------------------------------------ property: schema-generated recipes
HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.just("x" * 50_000),
    st.lists(st.integers(), max_size=4),
    st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
)


def _number(info: Any, integer: bool) -> st.SearchStrategy[Any]:
    """Values around the field's own bounds (inside and just outside), plus extremes."""
    edges: list[Any] = [0, 1, -1]
    for meta in info.metadata:
        for attr in ("ge", "gt", "le", "lt"):
            bound = getattr(meta, attr, None)
            if bound is not None:
                edges += [bound, bound - 1, bound + 1] if integer else [bound, bound * 0.999, bound * 1.001 + 1e-9]
    extremes = [2**63, -(2**63)] if integer else [math.inf, -math.inf, math.nan, 1e308]
    base = st.integers(-(10**6), 10**6) if integer else st.floats(-1e6, 1e6)
    return st.one_of(st.sampled_from(edges + extremes), base)


def _for_annotation(annotation: Any, info: Any, depth: int) -> st.SearchStrategy[Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(_for_annotation(a, info, depth) for a in typing.get_args(annotation)))
    if origin is typing.Annotated:
        return _for_annotation(typing.get_args(annotation)[0], info, depth)
    if origin is typing.Literal:
        return st.sampled_from(typing.get_args(annotation))
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        return st.lists(_for_annotation(item, info, depth), max_size=3)
    if origin is dict:
        return st.dictionaries(st.text(max_size=10), HOSTILE, max_size=2)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return section(annotation, depth + 1) if depth < 4 else st.just({})
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return _number(info, integer=True)
    if annotation is float:
        return _number(info, integer=False)
    if annotation is str:
        return st.text(max_size=12)
    if annotation is type(None):
        return st.none()
    return HOSTILE


def section(model: type[BaseModel], depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """A mapping for ``model``: each field omitted, typed from the schema, or hostile; sometimes a typo key."""
    fields = {
        name: st.one_of(_for_annotation(info.annotation, info, depth), HOSTILE)
        for name, info in model.model_fields.items()
    }
    if "plugins" in fields:  # modules to import: never a real one (hypothesis could spell "antigravity")
        fields["plugins"] = st.lists(st.text(max_size=8).map(lambda t: f"no_such_plugin_{t}"), max_size=2)
    optional = st.fixed_dictionaries({}, optional=fields)
    extra = st.dictionaries(st.text(min_size=1, max_size=10), HOSTILE, max_size=1)
    return st.builds(lambda a, b: {**b, **a}, optional, st.one_of(st.just({}), extra))


def _schema_recipe() -> st.SearchStrategy[dict[str, Any]]:
    """Recipes from the schema, grafted onto the tiny recipe often enough that many are valid."""
    base = tiny_raw()

    def graft(generated: dict[str, Any], keep: list[str]) -> dict[str, Any]:
        raw = {k: v for k, v in base.items() if k in keep}
        for key, value in generated.items():
            if isinstance(value, dict) and isinstance(raw.get(key), dict) and key != "data":
                raw[key] = {**raw[key], **value}
            else:
                raw[key] = value
        return raw

    keep = st.lists(st.sampled_from(sorted(base)), unique=True)
    return st.builds(graft, section(Recipe), keep)


def _check(raw: dict[str, Any]) -> Recipe | None:
    try:
        recipe = validate_recipe(raw, "generated.yaml")
    except Seq2SeqError as exc:  # ConfigError, or PluginError for a plugins: entry that cannot be imported
        assert isinstance(exc, ConfigError | PluginError), type(exc)
        assert len(str(exc)) < 20_000
        return None
    assert isinstance(recipe, Recipe)
    return recipe


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_schema_recipe())
def test_schema_generated_recipes_are_valid_or_a_config_error(raw):
    recipe = _check(raw)
    if recipe is not None:  # whatever validates is finite and within bounds
        dumped = recipe.to_dict()
        assert validate_recipe(dumped) == recipe
        stack: list[Any] = [dumped]
        while stack:
            value = stack.pop()
            if isinstance(value, dict):
                stack.extend(value.values())
            elif isinstance(value, list):
                stack.extend(value)
            elif isinstance(value, float):
                assert math.isfinite(value)


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(raw=_schema_recipe())
def test_schema_generated_recipes_through_the_cli_exit_2_without_a_traceback(raw, tmp_path_factory):
    """A refused recipe exits 2; a valid one is refused too here, by the folder that is not a run."""
    folder = tmp_path_factory.mktemp("cli")
    recipe = folder / "recipe.yaml"
    if _check(raw) is not None:  # keep the model small: this path builds it before the folder check
        raw["model"] = {"encoder": {"hidden_size": 8, "layers": 1}, "decoder": {"hidden_size": 8, "layers": 1}}
        raw["model"]["decoder"]["embedding_size"] = 8
    recipe.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    (folder / "not-a-run").mkdir()
    (folder / "not-a-run" / "README.md").write_text("the user's")
    proc = subprocess.run(
        [sys.executable, "-m", "seq2seq_rnn.cli", "train", str(recipe), "--output-dir", str(folder / "not-a-run")],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: ")
    assert (folder / "not-a-run" / "README.md").read_text() == "the user's"
    assert Path(folder / "not-a-run").exists()
