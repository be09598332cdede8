"""Recipes and run directories run no code without the user's consent (issue 21, class 4).

A recipe's (or a received run directory's) ``plugins:`` are imported only when named
with ``--import`` or listed in ``SEQ2SEQ_RNN_ALLOW_PLUGINS``; otherwise the command stops
(exit 2), naming them and the flag that allows them. Everything else in the recipe is
validated first; ``SEQ2SEQ_RNN_DISABLE_PLUGINS=1`` withdraws the variable's consent; what
a plugin prints when imported goes to stderr, never into translations.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import yaml

from seq2seq_rnn.config import load_recipe
from seq2seq_rnn.errors import ConfigError, PluginConsentError
from seq2seq_rnn.registry import ALLOW_ENV, DISABLE_ENV
from tests.helpers import TINY, cli_env, run_cli

PLUGIN = """\
import os
import pathlib

pathlib.Path(__file__).with_name("MARKER-" + __name__.rsplit("_", 1)[-1]).write_text("imported")
print("PLUGIN SAYS HELLO")
os.write(1, b"PLUGIN WRITES TO FD 1\\n")
"""


def plugin(folder: Path, name: str = "evil") -> Path:
    """A module that leaves ``MARKER-<name>`` beside itself when imported, and prints."""
    path = folder / f"cells_{name}.py"
    path.write_text(PLUGIN, encoding="utf-8")
    return path


def marker(folder: Path, name: str = "evil") -> Path:
    return folder / f"MARKER-{name}"


def recipe_with(folder: Path, plugins: list[str], **model: object) -> Path:
    raw = yaml.safe_load(TINY.read_text(encoding="utf-8"))
    for split in ("train", "validation", "test"):
        for side in ("source", "target"):
            raw["data"][split][side] = str((TINY.parent / raw["data"][split][side]).resolve())
    raw["plugins"] = plugins
    raw["model"]["encoder"].update(model)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_a_recipe_plugin_is_not_imported_without_consent(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    plugin(tmp_path)
    with pytest.raises(PluginConsentError) as caught:
        load_recipe(recipe_with(tmp_path, ["cells_evil.py"]))
    message = str(caught.value)
    assert str(tmp_path / "cells_evil.py") in message
    assert f"--import {tmp_path / 'cells_evil.py'}" in message and ALLOW_ENV in message
    assert not marker(tmp_path).exists()


def test_everything_else_is_validated_before_any_plugin(tmp_path: Path, monkeypatch) -> None:
    plugin(tmp_path)
    monkeypatch.setenv(ALLOW_ENV, str(tmp_path / "cells_evil.py"))  # even allowed: a bad recipe imports nothing
    with pytest.raises(ConfigError, match="hidden_size"):
        load_recipe(recipe_with(tmp_path, ["cells_evil.py"], hidden_size=0, cell="from_the_plugin"))
    assert not marker(tmp_path).exists()


@pytest.mark.parametrize("spelling", ["absolute", "dotdot", "symlink"])
def test_the_allow_variable_imports_and_output_goes_to_stderr(tmp_path: Path, monkeypatch, capfd, spelling) -> None:
    path = plugin(tmp_path, f"ok{spelling}")
    given = {
        "absolute": str(path),
        "dotdot": str(tmp_path / "sub" / ".." / path.name),
        "symlink": str(tmp_path / "link.py"),
    }[spelling]
    if spelling == "symlink":
        (tmp_path / "link.py").symlink_to(path)
    monkeypatch.setenv(ALLOW_ENV, f"something_else,{given}")
    load_recipe(recipe_with(tmp_path, [path.name]))
    assert marker(tmp_path, f"ok{spelling}").exists()
    out, err = capfd.readouterr()
    assert "PLUGIN" not in out
    assert "PLUGIN SAYS HELLO" in err and "PLUGIN WRITES TO FD 1" in err


def test_consent_is_for_the_named_module_only(tmp_path: Path, monkeypatch) -> None:
    plugin(tmp_path)
    plugin(tmp_path, "other")
    monkeypatch.setenv(ALLOW_ENV, str(tmp_path / "cells_other.py"))
    with pytest.raises(PluginConsentError, match="cells_evil.py"):
        load_recipe(recipe_with(tmp_path, ["cells_other.py", "cells_evil.py"]))
    assert not marker(tmp_path).exists() and not marker(tmp_path, "other").exists()  # all refused, none imported


def test_a_module_name_needs_consent_too(tmp_path: Path, monkeypatch) -> None:
    plugin(tmp_path, "mod")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    with pytest.raises(PluginConsentError, match="cells_mod"):
        load_recipe(recipe_with(tmp_path, ["cells_mod"]))
    assert not marker(tmp_path, "mod").exists()


def test_the_off_switch_covers_recipe_plugins(tmp_path: Path, monkeypatch) -> None:
    plugin(tmp_path)
    monkeypatch.setenv(ALLOW_ENV, str(tmp_path / "cells_evil.py"))
    monkeypatch.setenv(DISABLE_ENV, "1")
    with pytest.raises(PluginConsentError, match=DISABLE_ENV):
        load_recipe(recipe_with(tmp_path, ["cells_evil.py"]))
    assert not marker(tmp_path).exists()


def test_train_refuses_a_recipe_plugin_without_consent(tmp_path: Path) -> None:
    plugin(tmp_path)
    recipe = recipe_with(tmp_path, ["cells_evil.py"])
    env = {k: v for k, v in cli_env().items() if k != ALLOW_ENV}
    cases = ({}, {DISABLE_ENV: "1"}, {DISABLE_ENV: "1", ALLOW_ENV: str(tmp_path / "cells_evil.py")})
    for command, extra in [*(("train", e) for e in cases), ("tune", {})]:
        proc = run_cli(command, recipe, "--output-dir", tmp_path / "run", env={**env, **extra})
        assert proc.returncode == 2, proc.stderr
        assert "--import" in proc.stderr and "cells_evil.py" in proc.stderr and "Traceback" not in proc.stderr
        assert not marker(tmp_path).exists() and not (tmp_path / "run").exists()


def received(tiny_run: Path, tmp_path: Path, plugins: list[str]) -> Path:
    """A copy of the tiny run whose recipe.yaml was edited by someone else to name ``plugins``."""
    run = tmp_path / "received"
    shutil.copytree(tiny_run, run)
    raw = yaml.safe_load((run / "recipe.yaml").read_text(encoding="utf-8"))
    raw["plugins"] = plugins
    (run / "recipe.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    return run


@pytest.mark.parametrize(
    "command",
    [
        ["translate", "{run}"],
        ["evaluate", "{run}", "--split", "validation"],
        ["export", "{run}", "--output", "{tmp}/export"],
        pytest.param(
            ["translate", "{run}", "--ray", "--input", "{tmp}/cells_evil.py", "--output", "{tmp}/out"],
            marks=pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs ray"),
        ),
        ["serve", "{run}", "--port", "0"],
        ["train", "{run}/recipe.yaml", "--output-dir", "{run}", "--resume"],
    ],
    ids=["translate", "evaluate", "export", "translate-ray", "serve", "train-resume"],
)
def test_a_received_run_directory_imports_nothing_without_consent(tiny_run, tmp_path, command) -> None:
    evil = plugin(tmp_path)
    run = received(tiny_run, tmp_path, [str(evil)])
    env = {k: v for k, v in cli_env().items() if k != ALLOW_ENV}
    proc = run_cli(*(c.format(run=run, tmp=tmp_path) for c in command), stdin=b"Ein Hund.\n", env=env)
    assert proc.returncode == 2, proc.stderr
    assert f"--import {evil}" in proc.stderr and ALLOW_ENV in proc.stderr
    assert not marker(tmp_path).exists() and proc.stdout == ""


def test_translate_with_consent_prints_translations_only(tiny_run, tmp_path) -> None:
    evil = plugin(tmp_path)
    run = received(tiny_run, tmp_path, [str(evil)])
    source = b"Ein Hund.\nEine Katze.\n"
    plain = run_cli("translate", tiny_run, stdin=source)
    assert plain.returncode == 0, plain.stderr
    for how in (["--import", str(evil)], []):
        env = cli_env(**({} if how else {ALLOW_ENV: str(evil)}))
        proc = run_cli("translate", run, *how, stdin=source, env=env)
        assert proc.returncode == 0, proc.stderr
        assert marker(tmp_path).exists()
        assert proc.stdout == plain.stdout  # the plugin's prints went to stderr
        assert "PLUGIN SAYS HELLO" in proc.stderr and "PLUGIN WRITES TO FD 1" in proc.stderr
        marker(tmp_path).unlink()


@pytest.mark.slow  # ~25 s: trains a run with a plugin cell, then translates with it
def test_a_plugin_cell_printing_while_it_runs_stays_out_of_translations(tmp_path: Path) -> None:
    from tests.helpers import small_overrides, user_cell_source

    source = user_cell_source("test_noisy_cell")
    source = source.replace(
        "    def forward(self, x, state):\n", "    def forward(self, x, state):\n        print('NOISY')\n"
    )
    source = source.replace(
        "        super().__init__(input_size, hidden_size)\n",
        "        super().__init__(input_size, hidden_size)\n        print('NOISY INIT')\n",
    )
    cells = tmp_path / "noisy_cells.py"
    cells.write_text("print('NOISY IMPORT')\n" + source, encoding="utf-8")
    run = tmp_path / "run"
    settings = small_overrides(train__max_steps=2, train__validate_every=2, model__encoder__cell="test_noisy_cell")
    trained = run_cli("train", TINY, "--import", cells, "--output-dir", run, "--no-test", *settings)
    assert trained.returncode == 0, trained.stderr
    proc = run_cli("translate", run, "--import", cells, stdin=b"Ein Hund.\n\nEine Katze.\n")
    assert proc.returncode == 0, proc.stderr
    assert "NOISY" not in proc.stdout and len(proc.stdout.splitlines()) == 3
    assert "NOISY IMPORT" in proc.stderr and "NOISY INIT" in proc.stderr and "NOISY\n" in proc.stderr
