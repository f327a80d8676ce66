"""Command-line options built from the settings models, the one way every verb turns settings into options.

    opts = add_settings_options(parser, TrainConfig, title="training")           # --hid-dim, --ae-epochs, ...
    cfg = opts.build(args)                                                        # a validated TrainConfig

Each option is a field (or a dotted path into nested settings, `attack.victims`): its name is the field's with
dashes (`hid_dim` -> `--hid-dim`) unless `flags` renames it, its help is the field's description, and the default
shown is the one the model (or `base`) holds, read from the model: never restated here. Only the options the user
gives are applied, over `base`, over the model's defaults, and the model validates them at once: a mistake is one
sentence naming the option as typed (`--victims must be ...`), before any server, flow run or training starts.

How a field becomes an option, from its annotation: bool -> a switch (`--x`, or `--no-x` when the default is
true); `bool | None` -> `--x {auto,on,off}` (auto = null); a Literal -> choices; int / float -> a number; a
tuple of ints -> a comma-separated list (8,16,32); anything else -> text the model parses (lists and ranges of the
benchmark grid).
"""
from __future__ import annotations

import argparse
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnist_etc.config import Settings
from mnist_etc.errors import UserError

TRI_STATE = {"auto": None, "on": True, "off": False}


def leaves(hint: Any) -> list[Any]:
    """The plain types a field annotation accepts (Optional, Annotated and unions unwrapped)."""
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return leaves(typing.get_args(hint)[0])
    if origin in (typing.Union, types.UnionType):
        return [leaf for arg in typing.get_args(hint) for leaf in leaves(arg)]
    return [] if hint is type(None) else [hint]


def _optional(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return _optional(typing.get_args(hint)[0])
    return origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def int_list(text: str) -> tuple[int, ...]:
    """`8,16,32` -> (8, 16, 32); argparse turns the ValueError into its usage message."""
    try:
        return tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 8,16,32, got {text!r}") from None


def _field(model: type[Settings], path: str) -> tuple[Any, type[Settings]]:
    """The pydantic field at dotted `path` and the model that holds it."""
    *parents, leaf = path.split(".")
    for part in parents:
        model = next(t for t in leaves(model.model_fields[part].annotation) if isinstance(t, type)
                     and issubclass(t, Settings))
    return model.model_fields[leaf], model


def _value(values: Any, path: str) -> Any:
    for part in path.split("."):
        values = getattr(values, part)
    return values


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) if value else "none"
    return str(value)


@dataclass
class OptionSet:
    """The options one call added: which field each fills, and how to build the settings from them."""

    model: type[Settings]
    flags: dict[str, str]                         # path -> option as typed
    base: dict[str, Any] = field(default_factory=dict)
    key: str = ""
    convert: dict[str, Any] = field(default_factory=dict)   # path -> what turns the typed word into the value

    def dest(self, path: str) -> str:
        return f"{self.key}:{path}"

    def given(self, args: argparse.Namespace, path: str) -> bool:
        return hasattr(args, self.dest(path))

    def values(self, args: argparse.Namespace) -> dict[str, Any]:
        """path -> value of the options the user gave."""
        prefix = f"{self.key}:"
        given = {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix)}
        return {path: self.convert[path](v) if path in self.convert else v for path, v in given.items()}

    def build(self, args: argparse.Namespace, flags: dict[str, str] | None = None, **overrides: Any) -> Any:
        """The settings: the options given over `overrides`, over `base`, over the model's defaults. `flags` names
        the option behind an override in a mistake's sentence (path -> `--option`)."""
        nested: dict[str, Any] = {**self.base, **overrides}
        for path, value in self.values(args).items():
            *parents, leaf = path.split(".")
            node = nested
            for i, part in enumerate(parents):
                if not isinstance(node.get(part), dict):
                    # the rest of a nested model stays as the model's default has it
                    default = _value(self.model(), ".".join(parents[:i + 1]))
                    node[part] = default.model_dump(exclude_unset=False) if isinstance(default, Settings) else {}
                node = node[part]
            node[leaf] = value
        try:
            return self.model.parse(nested)
        except UserError as exc:
            named = {**self.flags, **{k: v for k, v in (flags or {}).items() if k not in self.values(args)}}
            raise UserError(flag_named(str(exc), named)) from None


def add_settings_options(parser: argparse.ArgumentParser, model: type[Settings], *, title: str | None = None,
                         fields: tuple[str, ...] | None = None, exclude: tuple[str, ...] = (),
                         flags: dict[str, str] | None = None, base: dict[str, Any] | None = None,
                         groups: dict[str, tuple[str, ...]] | None = None,
                         extra: dict[str, dict[str, Any]] | None = None, key: str | None = None) -> OptionSet:
    """One option per field of `model` (or per dotted path in `fields`); see the module docstring.

    `flags` renames options (path -> `--name`); `base` holds defaults that differ from the model's (shown in the
    help and applied when the option is not given); `groups` puts paths under titled argument groups (default: one
    group named `title`); `extra` replaces the derived argparse keywords of a path (an `append` action, a metavar);
    `key` names the options' namespace in `args` (default: the model's name). Keep the returned `OptionSet`: its
    `build(args)` makes the settings (`parser.set_defaults(settings=...)` carries it to the verb)."""
    flags = dict(flags or {})
    groups = groups or {title or f"{model.__name__} options": tuple(
        p for p in (fields or tuple(model.model_fields)) if p not in exclude)}
    opts = OptionSet(model, {}, dict(base or {}), key=key or model.__name__)
    shown_defaults = model.parse(opts.base) if opts.base else None
    made: dict[str, argparse._ArgumentGroup] = {}
    for group_title, paths in groups.items():
        group = made.get(group_title) or made.setdefault(group_title, parser.add_argument_group(group_title))
        for path in paths:
            f, _ = _field(model, path)
            flag = flags.get(path) or "--" + path.rsplit(".", 1)[-1].replace("_", "-")
            opts.flags[path] = flag
            default = _value(shown_defaults, path) if shown_defaults is not None else _default_of(model, path, f)
            kw = _argparse_keywords(f, flag, default)
            if path in (extra or {}):   # the caller's own keywords replace the derived ones (help kept if not given)
                kw = {"help": kw["help"], **extra[path]}
            names = [kw.pop("flag", flag)]
            opts.flags[path] = names[0]
            if "convert" in kw:
                opts.convert[path] = kw.pop("convert")
            group.add_argument(*names, dest=opts.dest(path), default=argparse.SUPPRESS, **kw)
    return opts


def _default_of(model: type[Settings], path: str, f: Any) -> Any:
    try:
        return _value(model(), path)
    except UserError:     # a model without defaults for every field (the benchmark overrides)
        return f.get_default(call_default_factory=True)


def _argparse_keywords(f: Any, flag: str, default: Any) -> dict[str, Any]:
    text = (f.description or "").replace("%", "%%")
    kinds = leaves(f.annotation)
    literal = [k for k in kinds if typing.get_origin(k) is typing.Literal]
    if kinds == [bool] and _optional(f.annotation):
        return {"choices": list(TRI_STATE), "convert": TRI_STATE.__getitem__,
                "help": f"{text} (auto = null; default: {next(k for k, v in TRI_STATE.items() if v is default)})"}
    if kinds == [bool]:
        if default is True:
            return {"flag": "--no-" + flag.removeprefix("--"), "action": "store_false",
                    "help": f"turn off: {text}"}
        return {"action": "store_true", "help": text}
    suffix = "" if default is None or default == () and not _tuple_of_int(kinds) else \
        f" (default: {_shown(default)})".replace("%", "%%")
    if literal:
        return {"choices": list(typing.get_args(literal[0])), "help": text + suffix}
    if kinds in ([int], [float]):
        return {"type": kinds[0], "metavar": kinds[0].__name__.upper(), "help": text + suffix}
    if _tuple_of_int(kinds):
        return {"type": int_list, "metavar": "N,N,...", "help": text + suffix}
    if Path in kinds:
        return {"type": Path, "metavar": "PATH", "help": text + suffix}
    return {"metavar": "TEXT", "help": text + suffix}


def _tuple_of_int(kinds: list[Any]) -> bool:
    return any(typing.get_origin(k) is tuple and leaves(typing.get_args(k)[0]) == [int] for k in kinds)


def flag_named(message: str, flags: dict[str, str]) -> str:
    """A settings sentence that starts with a key path (`attack.victims must be ...`, `victims must be ...`)
    reworded to name the option the user typed (`--victims must be ...`); `flags` maps path -> option."""
    for path, flag in flags.items():
        for said in (path, path.rsplit(".", 1)[-1]):
            if message.startswith(said + " ") or message.startswith(said + "["):
                return flag + message[len(said):]
    return message


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
