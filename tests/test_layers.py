"""Imports go one way: no module of seq2seq_rnn/ imports a module of a higher layer,
not even inside a function. The layer order is defined once, in CONTRIBUTING.md."""

from __future__ import annotations

import ast
import fnmatch
import re

from tests.helpers import ROOT

PACKAGE = ROOT / "seq2seq_rnn"


def layer_order() -> list[tuple[str, list[str]]]:
    """(layer name, module patterns), lowest first, from CONTRIBUTING.md's "Layers" list."""
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    layers = []
    for name, patterns in re.findall(r"^\d+\. \*\*(.+?)\*\*: (.+)$", section, flags=re.MULTILINE):
        cleaned = re.sub(r"\(.*?\)", "", patterns).replace("`", "")
        layers.append((name, [p.strip() for p in cleaned.split(",") if p.strip()]))
    return layers


def module_name(path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1]) if parts[-1] == "__init__" and len(parts) > 1 else ".".join(parts)


def layer_of(module: str, layers: list[tuple[str, list[str]]]) -> int | None:
    for index, (_, patterns) in enumerate(layers):
        if any(fnmatch.fnmatchcase(module, p) for p in patterns):
            return index
    return None


def imported(path) -> list[tuple[int, str]]:
    """(line, module relative to seq2seq_rnn) of every import of this package in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if name == "seq2seq_rnn":
                found.append((node.lineno, "__init__"))
            elif name.startswith("seq2seq_rnn."):
                found.append((node.lineno, name.removeprefix("seq2seq_rnn.")))
    return found


def test_the_layer_list_is_read_from_contributing() -> None:
    names = [name for name, _ in layer_order()]
    assert names[0] == "foundation" and names[-1] == "entry points" and len(names) >= 8


def test_every_module_has_a_layer() -> None:
    layers = layer_order()
    missing = [module_name(p) for p in PACKAGE.rglob("*.py") if layer_of(module_name(p), layers) is None]
    assert not missing, f"add these modules to the layer list in CONTRIBUTING.md: {missing}"


def test_no_module_imports_a_higher_layer() -> None:
    layers = layer_order()
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = layer_of(module_name(path), layers)
        for line, target in imported(path):
            other = layer_of(target, layers)
            if own is not None and other is not None and other > own:
                upward.append(
                    f"{path.relative_to(ROOT)}:{line} ({layers[own][0]}) imports {target} ({layers[other][0]})"
                )
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_the_check_catches_an_upward_import(tmp_path) -> None:
    layers = layer_order()
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from seq2seq_rnn.training import Trainer\n", encoding="utf-8")
    ((line, target),) = imported(probe)
    assert line == 2 and layer_of(target, layers) > layer_of("config", layers)


def test_the_cli_calls_inference_instead_of_doing_it() -> None:
    """cli.py parses, calls one entry point (inference/stream.py, plot.py, evaluate.py) and prints:
    it never decodes, chunks a stream or scores by itself."""
    decoding = {"translate", "translate_nbest", "translate_with_attention", "evaluate_split", "evaluate_files"}
    tree = ast.parse((PACKAGE / "cli.py").read_text(encoding="utf-8"))
    calls = [
        f"cli.py:{node.lineno} calls {node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")) in decoding
    ]
    assert not calls, "\n".join(calls)
    layers = layer_order()
    for module, layer in (("inference.stream", "inference"), ("config.cell_options", "recipe")):
        assert (PACKAGE / (module.replace(".", "/") + ".py")).is_file(), module
        assert layers[layer_of(module, layers)][0] == layer, module
