"""A hardened YAML loader for recipes and ``--set`` values: safe_load only, ``1e-3`` read as a
float, and documents that are too large, too deep or expand too much (aliases) refused."""

from __future__ import annotations

import re
from typing import Any

import yaml
import yaml.reader

from seq2seq_rnn.config.messages import shorten
from seq2seq_rnn.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` as a float (YAML 1.2), not a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$"),
    list("-+0123456789."),
)


# A recipe is a few hundred values. YAML aliases can make a 1 KB document expand to 10**9
# values ("billion laughs"): everything downstream (validation, error messages) would walk them.
MAX_RECIPE_BYTES = 200_000
MAX_YAML_NODES = 50_000  # values after alias expansion
MAX_YAML_DEPTH = 64


def parse_yaml(text: str, source: str) -> Any:
    """Safe-load ``text``, refusing documents that are too large, too deep or expand too much."""
    if len(text) > MAX_RECIPE_BYTES:
        raise ConfigError(f"{source}: more than {MAX_RECIPE_BYTES:,} characters; a recipe is a few KB")
    try:
        loader = _Loader(text)  # the reader refuses control characters here, before any parsing
    except yaml.reader.ReaderError as exc:
        raise ConfigError(
            f"{source}: control character U+{exc.character:04X} at character {exc.position + 1} is not allowed in "
            'YAML; remove it (inside double quotes an escape such as "\\x07" spells one, if you mean it)'
        ) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, source)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {shorten(str(exc), 500)}") from None
    except RecursionError:
        raise ConfigError(f"{source}: invalid YAML: nested more than {MAX_YAML_DEPTH} levels deep") from None
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node, source: str) -> None:
    """Count the values ``root`` stands for with every alias expanded, without expanding them."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int, path: tuple[int, ...]) -> int:
        if id(node) in path:
            raise ConfigError(f"{source}: a YAML alias refers to a value that contains it (a cycle)")
        if depth > MAX_YAML_DEPTH:
            raise ConfigError(f"{source}: invalid YAML: nested more than {MAX_YAML_DEPTH} levels deep")
        if id(node) not in sizes:
            if isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            elif isinstance(node, yaml.MappingNode):
                children = [item for pair in node.value for item in pair]
            else:
                children = []
            inner = (*path, id(node))
            total = 1 + sum(size(child, depth + 1, inner) for child in children)
            if total > MAX_YAML_NODES:
                raise ConfigError(
                    f"{source}: the YAML expands to more than {MAX_YAML_NODES:,} values (through aliases "
                    "such as *name); a recipe has a few hundred"
                )
            sizes[id(node)] = total
        return sizes[id(node)]

    size(root, 0, ())
