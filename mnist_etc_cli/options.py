"""Command-line options derived from the config dataclasses: `hid_dim` becomes `--hid-dim`, with the
field's help text and default. Only options the user gives override the defaults."""
from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any


def _parser_type(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    return base if base in (int, float, str) else str


def add_config_options(parser: argparse.ArgumentParser, cls: type, rename: dict[str, str] | None = None,
                       exclude: tuple[str, ...] = (), title: str | None = None) -> None:
    """One option per field of `cls`; `rename` maps field -> option name (without dashes)."""
    rename = rename or {}
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(title or f"{cls.__name__} options")
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        opt = "--" + rename.get(f.name, f.name).replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        if hints[f.name] is bool:
            group.add_argument(opt, dest=f"{cls.__name__}.{f.name}", action="store_true", default=argparse.SUPPRESS,
                               help=f.metadata.get("help", ""))
            continue
        group.add_argument(opt, dest=f"{cls.__name__}.{f.name}", type=_parser_type(hints[f.name]),
                           default=argparse.SUPPRESS, metavar=_parser_type(hints[f.name]).__name__.upper(),
                           help=f"{f.metadata.get('help', '')} (default: {default})")


def config_from_args(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """The config of `cls` from the options given, over `overrides`, over the dataclass defaults."""
    values = dict(overrides)
    prefix = f"{cls.__name__}."
    for key, value in vars(args).items():
        if key.startswith(prefix):
            values[key[len(prefix):]] = value
    return cls(**values)


def given(args: argparse.Namespace, cls: type, name: str) -> bool:
    return hasattr(args, f"{cls.__name__}.{name}")


def add_model_source_options(parser: argparse.ArgumentParser, what: str = "source") -> None:
    """--model / --winner / --mlflow-model / --mlflow-tracking-uri: the trained model a verb reads
    (`mnist_etc.export_source.resolve_source` takes them in this order)."""
    src = parser.add_argument_group(f"{what} (one of; default: newest artifacts/sweeps/*/winner.json)")
    src.add_argument("--model", type=Path, help="a trained-model directory written by 'mnist-etc train'")
    src.add_argument("--winner", type=Path, help="a sweep's winner.json")
    src.add_argument("--mlflow-model", metavar="URI",
                     help="models:/<name>@<alias> (the sweep registers models:/mnist-etc-<study>@champion), "
                          "models:/<name>/<version> or runs:/<run id>/<path>, whose artifacts hold a trained-model "
                          "directory")
    src.add_argument("--mlflow-tracking-uri", metavar="URI",
                     help="MLflow tracking URI of --mlflow-model (default: $MLFLOW_TRACKING_URI, else the sweep's "
                          "sqlite:///artifacts/mlflow.db); a winner.json names its own")
