"""Typed cell options: a cell's options model checks ``model.*.cell_options`` when
the recipe is loaded, with dotted-path errors; cells without one pass options through."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import Field

from seq2seq_rnn.cells import CellFactory, RecurrentCell
from seq2seq_rnn.cells.base import CellOptions
from seq2seq_rnn.components import CELLS, register_cell
from seq2seq_rnn.config import load_recipe
from seq2seq_rnn.errors import ConfigError
from tests.helpers import TINY, load_layernorm_cell


class _Options(CellOptions):
    eps: float = Field(default=1e-5, gt=0.0)
    affine: bool = True


@pytest.fixture(scope="module", autouse=True)
def cells() -> Iterator[None]:
    register_cell("test_typed_layernorm", load_layernorm_cell())
    yield
    CELLS.unregister("test_typed_layernorm")


def recipe_with(encoder_options: dict[str, Any], cell: str = "test_typed_layernorm") -> list[str]:
    return [f"model.encoder.cell={cell}", f"model.encoder.cell_options={encoder_options}"]


def test_the_plugin_declares_an_options_model() -> None:
    cls = load_layernorm_cell()
    assert cls.options_model is not None and issubclass(cls.options_model, CellOptions)
    assert sorted(cls.options_model.model_fields) == ["affine", "eps"]


@pytest.mark.parametrize(
    "options,expected",
    [
        ({"eps": 0.0}, "model.encoder.cell_options.eps: Input should be greater than 0 (got 0.0)"),
        ({"eps": "small"}, "model.encoder.cell_options.eps: Input should be a valid number"),
        ({"affine": "yes"}, "model.encoder.cell_options.affine: Input should be a valid boolean"),
        (
            {"epz": 1},
            "model.encoder.cell_options.epz: unknown option of cell 'test_typed_layernorm' (did you mean 'eps'?). "
            "Valid options: affine, eps",
        ),
    ],
)
def test_bad_options_fail_at_recipe_load_with_the_dotted_path(options: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_recipe(TINY, recipe_with(options))
    assert expected in str(info.value)


def test_good_options_load_and_reach_the_cell() -> None:
    recipe = load_recipe(TINY, recipe_with({"eps": 1e-3, "affine": False}))
    assert recipe.model.encoder.cell_options == {"eps": 1e-3, "affine": False}  # the recipe keeps what was written
    cell = CellFactory.resolve("test_typed_layernorm", recipe.model.encoder.cell_options)(4, 6)
    assert cell.eps == 1e-3 and not cell.affine


def test_a_cell_without_an_options_model_passes_options_through() -> None:
    class Untyped(RecurrentCell):
        def __init__(self, input_size: int, hidden_size: int, scale: float = 1.0) -> None:
            super().__init__(input_size, hidden_size)
            self.scale = scale

        initial_state = load_layernorm_cell().initial_state
        forward = load_layernorm_cell().forward

    register_cell("test_untyped_cell", Untyped)
    try:
        recipe = load_recipe(TINY, recipe_with({"scale": "not checked at load"}, cell="test_untyped_cell"))
        assert recipe.model.encoder.cell_options == {"scale": "not checked at load"}
        with pytest.raises(ConfigError, match=r"model\.encoder\.cell_options: cell 'test_untyped_cell'"):
            CellFactory.resolve("test_untyped_cell", {"bogus": 1}, "model.encoder")(4, 4)
    finally:
        CELLS.unregister("test_untyped_cell")


def test_a_builtin_cell_without_options_is_not_imported_at_recipe_load() -> None:
    import subprocess
    import sys

    code = (
        "import sys\nfrom seq2seq_rnn.config import load_recipe\n"
        f"load_recipe({str(TINY)!r})\nassert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
