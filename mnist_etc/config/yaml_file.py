"""The one YAML loader of configuration files: safe, strict about duplicate keys, numbers read as numbers.

    >>> raw = read_yaml("search_spaces/smoke.yaml", what="search space", example="search_spaces/smoke.yaml")

A key given twice is refused (PyYAML would keep the last silently), and 1e-3 is a float (YAML 1.1 wants
1.0e-3). A missing file or a YAML syntax error is one sentence naming the file and the line.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from mnist_etc.errors import UserError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and reads 1e-3 as a float."""


def _mapping_no_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise UserError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}; give each key once.")
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_no_duplicates)
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text strictly; errors name `source` and the line."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except UserError as exc:
        raise UserError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{source}: not valid YAML{where} ({problem}).") from None


def read_yaml(path: str | Path, what: str, example: str) -> Any:
    """Read a configuration file: `what` and `example` word the sentence when the file is missing."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {str(path)!r} does not exist; pass a YAML file such as {example}.")
    return parse_yaml(path.read_text(), str(path))
