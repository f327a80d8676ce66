"""Command-line options derived from the settings models: `hid_dim` becomes `--hid-dim`, with the
field's help text and default. Only options the user gives override the defaults."""
from __future__ import annotations

import argparse
import typing
from pathlib import Path
from typing import Any


def _parser_type(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    base = typing.get_args(base)[0] if typing.get_origin(base) is typing.Annotated else base
    return base if base in (int, float, str) else str


def add_config_options(parser: argparse.ArgumentParser, cls: type, rename: dict[str, str] | None = None,
                       exclude: tuple[str, ...] = (), title: str | None = None) -> None:
    """One option per field of the settings model `cls`; `rename` maps field -> option name (without dashes)."""
    rename = rename or {}
    group = parser.add_argument_group(title or f"{cls.__name__} options")
    for name, f in cls.model_fields.items():
        if name in exclude:
            continue
        opt = "--" + rename.get(name, name).replace("_", "-")
        if f.annotation is bool:
            group.add_argument(opt, dest=f"{cls.__name__}.{name}", action="store_true", default=argparse.SUPPRESS,
                               help=(f.description or "").replace("%", "%%"))
            continue
        kind = _parser_type(f.annotation)
        group.add_argument(opt, dest=f"{cls.__name__}.{name}", type=kind, default=argparse.SUPPRESS,
                           metavar=kind.__name__.upper(),
                           help=f"{f.description or ''} (default: {f.default})".replace("%", "%%"))


def config_from_args(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """The settings of `cls` from the options given, over `overrides`, over the model's defaults."""
    values = dict(overrides)
    prefix = f"{cls.__name__}."
    for key, value in vars(args).items():
        if key.startswith(prefix):
            values[key[len(prefix):]] = value
    return cls(**values)


def flag_named(message: str, flags: dict[str, str]) -> str:
    """A settings sentence that starts with a key path (`attack.victims must be ...`, `victims must be ...`)
    reworded to name the option the user typed (`--victims must be ...`); `flags` maps path -> option."""
    for path, flag in flags.items():
        for said in (path, path.rsplit(".", 1)[-1]):
            if message.startswith(said + " ") or message.startswith(said + "["):
                return flag + message[len(said):]
    return message


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
