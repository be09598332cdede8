"""Registries: explicit registration, entry-point plugins found through real
installed-distribution metadata (a ``*.dist-info`` folder as pip writes it),
lazy import, and errors that name every party involved."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from seq2seq_rnn.cells.base import RecurrentCell
from seq2seq_rnn.components import CELLS, register_cell
from seq2seq_rnn.config import validate_recipe
from seq2seq_rnn.errors import ConfigError, PluginError
from seq2seq_rnn.registry import BUILTIN, Registry

BUILTIN_CELLS = {
    "rnn": "seq2seq_rnn.cells.builtin:TanhRNNCell",
    "lstm": "seq2seq_rnn.cells.builtin:LSTMCell",
    "gru": "seq2seq_rnn.cells.builtin:GRUCell",
}

CELL_MODULE = """
import torch
from seq2seq_rnn.cells.base import RecurrentCell


class {cls}(RecurrentCell):
    def initial_state(self, batch_size, device, dtype):
        return (torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype),)

    def forward(self, x, state):
        h = torch.tanh(x.sum(-1, keepdim=True) + state[0])
        return h, (h,)
"""


class TinyCell(RecurrentCell):
    def initial_state(self, batch_size, device, dtype):  # type: ignore[override]
        raise NotImplementedError

    def forward(self, x, state):  # type: ignore[override]
        raise NotImplementedError


# -------------------------------------------------------------------- helpers
def install_dist(root: Path, dist: str, version: str, entry_points: dict[str, dict[str, str]]) -> Path:
    """Write ``<dist>-<version>.dist-info`` with METADATA and entry_points.txt,
    in the format pip writes when it installs a wheel."""
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
    sections = [
        f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in names.items())
        for group, names in entry_points.items()
    ]
    (info / "entry_points.txt").write_text("\n".join(sections), encoding="utf-8")
    (info / "RECORD").write_text("", encoding="utf-8")
    return info


def write_module(root: Path, dotted: str, source: str) -> None:
    """Create the package folders and module ``dotted`` under ``root``."""
    parts = dotted.split(".")
    folder = root.joinpath(*parts[:-1])
    folder.mkdir(parents=True, exist_ok=True)
    for depth in range(1, len(parts)):
        init = root.joinpath(*parts[:depth], "__init__.py")
        if not init.exists():
            init.write_text("", encoding="utf-8")
    (folder / f"{parts[-1]}.py").write_text(textwrap.dedent(source), encoding="utf-8")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh "site-packages" on sys.path; its packages are removed from
    sys.modules afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in list(sys.modules):
        module_file = getattr(sys.modules[name], "__file__", None) or ""
        if module_file.startswith(str(tmp_path)):
            del sys.modules[name]


@pytest.fixture
def group(request: pytest.FixtureRequest) -> str:
    """A group no other test (or installed package) uses."""
    return f"seq2seq_rnn_test.{request.node.name}".replace("[", "_").replace("]", "_")


def cell_registry(group: str) -> Registry:
    return Registry("cell", group, BUILTIN_CELLS, validator=CELLS.validator)


def unique_package(request: pytest.FixtureRequest) -> str:
    return "plug_" + "".join(c if c.isalnum() else "_" for c in request.node.name)


# ---------------------------------------------------------- register() rules
def test_register_cannot_shadow_a_builtin() -> None:
    with pytest.raises(PluginError) as info:
        register_cell("lstm", TinyCell)
    assert "'lstm'" in str(info.value) and BUILTIN in str(info.value) and __name__ in str(info.value)
    assert CELLS.origin("lstm") == BUILTIN
    assert CELLS.get("lstm").__module__ == "seq2seq_rnn.cells.builtin"


def test_double_registration_names_both_origins() -> None:
    other = type("OtherCell", (TinyCell,), {"__module__": "other_plugin.cells"})
    registry = cell_registry("seq2seq_rnn_test.double")
    registry.register("tiny", TinyCell)
    with pytest.raises(PluginError) as info:
        registry.register("tiny", other)
    message = str(info.value)
    assert "other_plugin.cells" in message and f"register() in {__name__}" in message
    assert registry.get("tiny") is TinyCell
    registry.register("tiny", TinyCell)  # the same object again is harmless


def test_register_and_unregister_on_the_global_registry() -> None:
    register_cell("test_registry_tiny", TinyCell)
    try:
        assert "test_registry_tiny" in CELLS.names()
        assert CELLS.origin("test_registry_tiny") == f"register() in {__name__}"
    finally:
        CELLS.unregister("test_registry_tiny")
    assert "test_registry_tiny" not in CELLS.names()
    with pytest.raises(PluginError):
        CELLS.unregister("lstm")  # built-ins stay
    with pytest.raises(PluginError):
        CELLS.unregister("test_registry_tiny")


def test_register_as_decorator() -> None:
    registry = cell_registry("seq2seq_rnn_test.decorator")

    @registry.register("decorated")
    class Decorated(TinyCell):
        pass

    assert registry.get("decorated") is Decorated


def test_unknown_name_lists_choices_and_suggests() -> None:
    registry = cell_registry("seq2seq_rnn_test.unknown")
    registry.register("minimal_lstm", TinyCell)
    with pytest.raises(ConfigError) as info:
        registry.get("lstn")
    message = str(info.value)
    assert "'lstn'" in message and "did you mean 'lstm'?" in message
    assert "Valid choices: gru, lstm, minimal_lstm, rnn" in message
    with pytest.raises(ConfigError, match="Valid choices"):
        registry.origin("xyzzy")


def test_unknown_cell_in_a_recipe_names_the_path() -> None:
    split = {"source": "a.de", "target": "a.en"}
    raw = {
        "data": {"source_lang": "de", "target_lang": "en", "train": split, "validation": split},
        "model": {"decoder": {"cell": "gur"}},
    }
    with pytest.raises(ConfigError) as info:
        validate_recipe(raw, "r.yaml")
    message = str(info.value)
    assert "model.decoder.cell" in message and "did you mean 'gru'?" in message
    assert all(name in message for name in CELLS.names())


# ------------------------------------------------------ entry-point plugins
def test_entry_point_is_listed_with_origin_and_imported_lazily(
    site: Path, group: str, request: pytest.FixtureRequest
) -> None:
    package = unique_package(request)
    write_module(site, f"{package}.cells", CELL_MODULE.format(cls="FancyCell"))
    install_dist(site, "acme-cells", "1.2.3", {group: {"fancy": f"{package}.cells:FancyCell"}})
    registry = cell_registry(group)

    assert registry.names() == ["fancy", "gru", "lstm", "rnn"]
    assert registry.origin("fancy") == "acme-cells 1.2.3 (entry point)"
    assert [e.origin for e in registry.entries() if e.name == "fancy"] == ["acme-cells 1.2.3 (entry point)"]
    assert f"{package}.cells" not in sys.modules, "listing a plugin must not import it"
    assert package not in sys.modules

    cls = registry.get("fancy")
    assert f"{package}.cells" in sys.modules
    assert cls.__name__ == "FancyCell" and issubclass(cls, RecurrentCell)
    assert registry.get("fancy") is cls


def test_entry_point_in_the_real_group_is_a_usable_cell(site: Path, request: pytest.FixtureRequest) -> None:
    """The group name the example plugin uses; a fresh Registry (the global one
    has already scanned), and the cell goes through the full contract check."""
    from seq2seq_rnn.cells import check_cell_instance

    package = unique_package(request)
    write_module(site, f"{package}.cells", CELL_MODULE.format(cls="SumCell"))
    install_dist(site, "sum-cell", "0.0.1", {CELLS.group: {"test_sum_cell": f"{package}.cells:SumCell"}})
    registry = cell_registry(CELLS.group)
    assert "test_sum_cell" in registry.names()
    cell = registry.get("test_sum_cell")(3, 1)
    check_cell_instance("test_sum_cell", registry.origin("test_sum_cell"), cell)


def test_two_distributions_providing_one_name(site: Path, group: str, request: pytest.FixtureRequest) -> None:
    package = unique_package(request)
    write_module(site, f"{package}.c", CELL_MODULE.format(cls="OtherCell"))
    install_dist(site, "acme-cells", "1.2.3", {group: {"fancy": f"{package}.a:FancyCell"}})
    install_dist(
        site, "other-cells", "0.4", {group: {"fancy": f"{package}.b:FancyCell", "other": f"{package}.c:OtherCell"}}
    )
    registry = cell_registry(group)
    assert {"fancy", "other", "lstm"} <= set(registry.names())  # listing works
    for _ in range(2):  # the conflict stays an error; it is not forgotten after one call
        with pytest.raises(PluginError) as info:
            registry.get("fancy")
        message = str(info.value)
        assert "'fancy'" in message and "acme-cells 1.2.3" in message and "other-cells 0.4" in message
        assert "SEQ2SEQ_RNN_DISABLE_PLUGINS=" in message
    assert registry.get("lstm").__name__ == "LSTMCell"  # built-ins keep working
    assert registry.get("other").__name__ == "OtherCell"  # and so does the other name of one of the two


def test_list_cells_shows_a_conflict(site: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import seq2seq_rnn.components as components
    from seq2seq_rnn.cli import main

    install_dist(site, "acme-cells", "1.2.3", {CELLS.group: {"test_clash": "acme.cells:Cell"}})
    install_dist(site, "other-cells", "0.4", {CELLS.group: {"test_clash": "other.cells:Cell"}})
    monkeypatch.setattr(components, "CELLS", cell_registry(CELLS.group))
    assert main(["list-cells"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("test_clash"))
    assert "unusable:" in line and "acme-cells 1.2.3" in line and "other-cells 0.4" in line


def test_a_conflict_fails_only_recipes_using_that_name(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import seq2seq_rnn.config.schema as config

    install_dist(site, "acme-cells", "1.2.3", {CELLS.group: {"test_clash": "acme.cells:Cell"}})
    install_dist(site, "other-cells", "0.4", {CELLS.group: {"test_clash": "other.cells:Cell"}})
    registry = cell_registry(CELLS.group)
    monkeypatch.setattr(config, "CELLS", registry)
    base = {
        "data": {
            "source_lang": "de",
            "target_lang": "en",
            "train": {"source": "a", "target": "b"},
            "validation": {"source": "a", "target": "b"},
        }
    }
    assert validate_recipe(base).model.encoder.cell == "lstm"
    with pytest.raises(PluginError, match=r"'test_clash'.*acme-cells 1\.2\.3.* and other-cells 0\.4"):
        validate_recipe({**base, "model": {"encoder": {"cell": "test_clash"}}})


@pytest.mark.parametrize("value,skipped", [("1", {"acme-cells", "other-cells"}), ("Other_Cells", {"other-cells"})])
def test_plugins_can_be_switched_off(
    site: Path, group: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, value: str, skipped: set
) -> None:
    package = unique_package(request)
    write_module(site, f"{package}.a", CELL_MODULE.format(cls="FancyCell"))
    install_dist(site, "acme-cells", "1.2.3", {group: {"fancy": f"{package}.a:FancyCell"}})
    install_dist(site, "other-cells", "0.4", {group: {"fancy": f"{package}.b:Broken", "extra": f"{package}.b:X"}})
    monkeypatch.setenv("SEQ2SEQ_RNN_DISABLE_PLUGINS", value)
    registry = cell_registry(group)
    names = set(registry.names())
    assert ("fancy" in names) == ("acme-cells" not in skipped) and "extra" not in names
    assert {"lstm", "gru", "rnn"} <= names
    if "acme-cells" not in skipped:
        assert registry.get("fancy").__name__ == "FancyCell"  # the conflict is gone with other-cells skipped
        assert registry.origin("fancy") == "acme-cells 1.2.3 (entry point)"


def test_entry_point_that_fails_to_import(site: Path, group: str, request: pytest.FixtureRequest) -> None:
    package = unique_package(request)
    write_module(site, f"{package}.cells", "raise ImportError('needs libfancy >= 2')\n")
    install_dist(
        site,
        "acme-cells",
        "1.2.3",
        {group: {"fancy": f"{package}.cells:FancyCell", "missing": f"{package}.nowhere:Cell"}},
    )
    registry = cell_registry(group)
    assert {"fancy", "missing"} <= set(registry.names())  # listing still works
    with pytest.raises(PluginError) as info:
        registry.get("fancy")
    message = str(info.value)
    assert "'fancy'" in message and "acme-cells 1.2.3" in message and "needs libfancy >= 2" in message
    with pytest.raises(PluginError, match=r"'missing' from acme-cells 1\.2\.3"):
        registry.get("missing")
    assert registry.get("lstm").__name__ == "LSTMCell"  # one broken plugin breaks nothing else


def test_entry_point_that_is_not_a_cell(site: Path, group: str, request: pytest.FixtureRequest) -> None:
    package = unique_package(request)
    write_module(site, f"{package}.cells", "import torch\nNotACell = torch.nn.LSTMCell\n")
    install_dist(site, "acme-cells", "1.2.3", {group: {"fancy": f"{package}.cells:NotACell"}})
    registry = cell_registry(group)
    with pytest.raises(PluginError, match=r"'fancy' from acme-cells 1\.2\.3.*not a subclass"):
        registry.get("fancy")


def test_entry_point_shadowing_a_builtin(site: Path, group: str, request: pytest.FixtureRequest) -> None:
    package = unique_package(request)
    install_dist(site, "evil-cells", "6.6.6", {group: {"lstm": f"{package}.cells:FasterLSTM"}})
    registry = cell_registry(group)
    assert "lstm" in registry.names()
    for _ in range(2):  # and again: the built-in is never silently replaced
        with pytest.raises(PluginError) as info:
            registry.get("lstm")
        message = str(info.value)
        assert "'lstm'" in message and "evil-cells 6.6.6" in message and "built-in" in message
    assert registry.get("gru").__name__ == "GRUCell"  # the other built-ins keep working


def test_register_cannot_take_an_entry_point_name(site: Path, group: str, request: pytest.FixtureRequest) -> None:
    package = unique_package(request)
    install_dist(site, "acme-cells", "1.2.3", {group: {"fancy": f"{package}.cells:FancyCell"}})
    registry = cell_registry(group)
    with pytest.raises(PluginError, match=r"acme-cells 1\.2\.3 \(entry point\)"):
        registry.register("fancy", TinyCell)


def test_distributions_in_other_groups_are_ignored(site: Path, group: str, request: pytest.FixtureRequest) -> None:
    install_dist(site, "acme-cells", "1.2.3", {f"{group}.other": {"fancy": "nowhere:Cell"}})
    assert cell_registry(group).names() == ["gru", "lstm", "rnn"]


def test_registries_do_not_import_torch() -> None:
    code = (
        "import sys, seq2seq_rnn.registry, seq2seq_rnn.components, seq2seq_rnn.config\n"
        "from seq2seq_rnn.components import CELLS\n"
        "CELLS.names()\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
