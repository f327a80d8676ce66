"""JSON Schemas of the configuration files, generated from the models, for editors and for review.

    python -m mnist_etc.config.schema            # (re)write search_spaces/schema/*.json   (= make schemas)
    python -m mnist_etc.config.schema --check    # exit 1 when a file is not what the models give

Each YAML under search_spaces/ names its schema on its first line (`# yaml-language-server: $schema=...`),
so editors with the YAML language server complete keys, show each field's description and flag mistakes
while typing; the loader's checks remain the authority (cross-field rules are not in the schema).
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path("search_spaces/schema")
# file -> "module:Model"
SCHEMAS = {
    "search-space.json": "mnist_etc.sweep.space:SearchSpace",
    "benchmark-grid.json": "mnist_etc.benchmark.grid:BenchmarkSpec",
}


def schema_of(target: str) -> dict[str, Any]:
    module, _, name = target.partition(":")
    model = getattr(importlib.import_module(module), name)
    schema = model.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def render(target: str) -> str:
    return json.dumps(schema_of(target), indent=2, sort_keys=False) + "\n"


def stale(directory: Path = SCHEMA_DIR) -> list[str]:
    """The schema files that are missing or differ from what the models give."""
    return [name for name, target in SCHEMAS.items()
            if not (directory / name).is_file() or (directory / name).read_text() != render(target)]


def write(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, target in SCHEMAS.items():
        (directory / name).write_text(render(target))
        out.append(directory / name)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mnist_etc.config.schema", description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check that the files are current")
    ap.add_argument("--dir", type=Path, default=SCHEMA_DIR, help=f"schema folder (default {SCHEMA_DIR})")
    args = ap.parse_args(argv)
    if args.check:
        old = stale(args.dir)
        if old:
            print(f"out of date: {', '.join(old)}; run `make schemas`", file=sys.stderr)
            return 1
        print(f"{len(SCHEMAS)} schema(s) current in {args.dir}")
        return 0
    for path in write(args.dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
