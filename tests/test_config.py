"""Recipe loading: overrides, literal parsing, defaults in one place, paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from seq2seq_rnn.config import Recipe, load_recipe, parse_override
from seq2seq_rnn.errors import ConfigError
from seq2seq_rnn.nn.decoder import Decoder
from seq2seq_rnn.nn.encoder import Encoder

RECIPES = sorted(Path("recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_shipped_recipes_are_valid_and_their_data_exists(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.to_yaml()
    if recipe.data.format == "text":
        for split in (recipe.data.train, recipe.data.validation, recipe.data.test):
            if split is not None:
                assert Path(split.source).is_file() and Path(split.target).is_file()


def test_overrides_are_literals_by_dotted_path() -> None:
    recipe = load_recipe(
        "recipes/tiny.yaml",
        [
            "model.encoder.cell=gru",
            "train.max_steps=7",
            "train.optimizer.lr=1e-4",
            "model.decoder.input_feeding=false",
            "model.encoder.cell_options={}",
        ],
    )
    assert recipe.model.encoder.cell == "gru"
    assert recipe.train.max_steps == 7
    assert recipe.train.optimizer.lr == pytest.approx(1e-4)
    assert recipe.model.decoder.input_feeding is False


def test_override_of_unknown_key_names_the_path_and_suggests() -> None:
    with pytest.raises(ConfigError, match=r"model\.encoder\.hiden_size: unknown key \(did you mean 'hidden_size'\?\)"):
        load_recipe("recipes/tiny.yaml", ["model.encoder.hiden_size=3"])


def test_override_never_evaluates_code() -> None:
    recipe = load_recipe("recipes/tiny.yaml", ["name=__import__('os').system('false')"])
    assert recipe.name == "__import__('os').system('false')"
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("train.max_steps")


def test_resolved_recipe_round_trips(tmp_path: Path) -> None:
    recipe = load_recipe("recipes/tiny.yaml")
    (tmp_path / "r.yaml").write_text(recipe.to_yaml(), encoding="utf-8")
    again = load_recipe(tmp_path / "r.yaml")
    assert again == recipe
    assert Path(again.data.train.source).is_absolute()


def test_defaults_live_on_the_fields() -> None:
    minimal = {
        "data": {
            "source_lang": "de",
            "target_lang": "en",
            "train": {"source": "a", "target": "b"},
            "validation": {"source": "c", "target": "d"},
        }
    }
    recipe = Recipe.model_validate(minimal)
    # the documented defaults (README, docs/cli.md); changing one is a decision, not an accident
    assert recipe.train.optimizer.lr == 1e-3 and recipe.decode.beam_size == 5
    assert recipe.model.encoder.cell == "lstm" and recipe.model.attention.type == "bahdanau"
    assert (recipe.train.validation_batch_size, recipe.max_source_length) == (64, 2 * recipe.data.max_length)
    # modules built without a recipe take the same defaults from the config fields: no second copy in nn/
    encoder = Encoder(vocab_size=10)
    decoder = Decoder(vocab_size=10, memory_size=encoder.output_size)
    enc, dec = recipe.model.encoder, recipe.model.decoder
    assert encoder.embed.embedding_dim == enc.embedding_size and len(encoder.forward_cells) == enc.layers
    assert encoder.output_size == 2 * enc.hidden_size and encoder.dropout.p == enc.dropout
    assert decoder.hidden_size == dec.hidden_size and len(decoder.cells) == dec.layers
    assert decoder.input_feeding is dec.input_feeding and decoder.output_dropout.p == dec.output_dropout
