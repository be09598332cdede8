"""User modules imported first: ``--import MODULE`` and a recipe's ``plugins:`` list,
so a cell added with ``@register_cell`` in a user's script works from the CLI,
including for the run directory trained with it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from seq2seq_rnn.components import CELLS
from seq2seq_rnn.config import load_recipe
from seq2seq_rnn.errors import PluginError
from seq2seq_rnn.registry import ALLOW_ENV
from tests.helpers import TINY, run_cli, small_overrides, user_cell_source


def write_cells(folder: Path, name: str, file: str = "my_cells.py") -> Path:
    path = folder / file
    path.write_text(user_cell_source(name), encoding="utf-8")
    return path


def test_recipe_plugins_list_imports_a_file_relative_to_the_recipe(tmp_path: Path, monkeypatch) -> None:
    write_cells(tmp_path, "test_recipe_plugin_cell")
    monkeypatch.setenv(ALLOW_ENV, str(tmp_path / "my_cells.py"))  # consent (issue 21): a recipe's code is not run
    raw = yaml.safe_load(TINY.read_text(encoding="utf-8"))
    raw["plugins"] = ["my_cells.py"]
    raw["model"]["encoder"]["cell"] = "test_recipe_plugin_cell"
    for split in ("train", "validation", "test"):
        for side in ("source", "target"):
            raw["data"][split][side] = str((TINY.parent / raw["data"][split][side]).resolve())
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    try:
        recipe = load_recipe(recipe_path)
        assert recipe.model.encoder.cell == "test_recipe_plugin_cell"
        assert recipe.plugins == [str(tmp_path / "my_cells.py")]  # absolute: the run directory works from anywhere
        assert "plugins" in recipe.to_dict()
    finally:
        CELLS.unregister("test_recipe_plugin_cell")
    assert "plugins" not in load_recipe(TINY).to_dict()  # recipes without plugins are written as before


def test_an_unimportable_plugin_names_the_recipe_key(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, "no_such_module_xyz")
    with pytest.raises(PluginError, match=r"plugins: cannot import 'no_such_module_xyz': ModuleNotFoundError"):
        load_recipe(TINY, ["plugins=[no_such_module_xyz]"])


def test_cli_import_failure_is_a_clear_error(tmp_path: Path) -> None:
    proc = run_cli("train", TINY, "--import", tmp_path / "missing_cells.py", "--output-dir", tmp_path / "run")
    assert proc.returncode == 2
    assert "--import: cannot import" in proc.stderr and "missing_cells.py" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()


@pytest.mark.slow  # ~25 s: two trainings and two decodings through the CLI
def test_cli_import_trains_and_the_run_dir_translates_with_the_same_import(tmp_path: Path) -> None:
    cells = write_cells(tmp_path, "test_cli_user_cell")
    run = tmp_path / "run"
    settings = small_overrides(
        train__max_steps=4,
        train__validate_every=4,
        model__encoder__cell="test_cli_user_cell",
        model__decoder__cell="test_cli_user_cell",
    )
    without = run_cli("train", TINY, "--output-dir", run, "--no-test", *settings)
    assert without.returncode == 2 and "unknown cell 'test_cli_user_cell'" in without.stderr
    proc = run_cli("train", TINY, "--import", cells, "--output-dir", run, "--no-test", *settings)
    assert proc.returncode == 0, proc.stderr
    saved = yaml.safe_load((run / "recipe.yaml").read_text(encoding="utf-8"))
    assert saved["plugins"] == [str(cells)]
    refused = run_cli("translate", run, stdin=b"Ein Hund.\n")  # the run's plugins need the same consent
    assert refused.returncode == 2 and f"--import {cells}" in refused.stderr
    out = run_cli("translate", run, "--import", cells, stdin=b"Ein Hund.\n")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 1
    again = run_cli("evaluate", run, "--import", cells, "--split", "validation", "--json")
    assert again.returncode == 0, again.stderr
    assert "bleu" in again.stdout
