"""The base of every typed configuration: a frozen, strict pydantic model whose mistakes read as one sentence.

    >>> class Window(Settings):
    ...     interval_ms: int = Field(5000, ge=100, description="one measurement window")
    >>> Window(interval_ms=10)
    UserError: interval_ms must be an integer >= 100, got 10.

Strict: numbers are read as numbers (an integer field refuses 2.0, "2" and true; a float field takes an
integer), unknown keys are refused, infinities and NaN are refused. What is accepted is read from the
field's own JSON Schema (type, bounds, choices), so a field's constraint is written once and serves the
check, the sentence, the editor schema and the Prefect form. Rules across fields are `model_validator`s
next to their model; they raise `ValueError` with a whole sentence, which is kept as it is.
"""
from __future__ import annotations

import re
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from mnist_etc.errors import UserError

STRICT = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False, validate_default=False,
                    use_attribute_docstrings=True)

# A sentence that starts with a key (`canaries must be ...`, `options: unknown key ...`): a nested model's
# sentence, joined to its path.
_NAMES_A_KEY = re.compile(r"^[a-z_][a-z0-9_.\[\]]*(: | (must|is|are)\b)")


# How pydantic names the member of a plain union in an error's location: `int`, `literal['a','b']`, a model.
_UNION_MEMBER = re.compile(r"^(int|float|str|bool|none|[a-z-]+\[.*\]|[A-Z][A-Za-z0-9]*)$")


class Settings(BaseModel):
    """A configuration: constructing one validates it; a mistake raises `UserError` with one sentence."""

    model_config = STRICT

    def __init__(self, /, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise UserError(sentence(exc, type(self))) from None

    @classmethod
    def parse(cls, values: Any, source: str | None = None) -> Self:
        """Validate a mapping (as read from YAML, JSON or a flow parameter); `source` prefixes the sentence."""
        if isinstance(values, cls):
            return values
        if values is None:
            values = {}
        if not isinstance(values, dict):
            what = f"a mapping of {cls.__name__} settings"
            raise UserError(f"{source + ': ' if source else ''}must be {what}, got {values!r}.")
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise UserError(f"{source + ': ' if source else ''}{sentence(exc, cls)}") from None
        except UserError as exc:
            raise UserError(f"{source + ': ' if source else ''}{exc}") from None

    def replace(self, **changes: Any) -> Self:
        """A copy with `changes`, validated like a new one (pydantic's model_copy does not validate)."""
        return type(self).parse({**self.model_dump(exclude_unset=True), **changes})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values, nested settings as mappings (what artifacts record)."""
        return self.model_dump(mode="json")


# ------------------------------------------------------------------------------------ one sentence


def sentence(exc: ValidationError, model: type[BaseModel]) -> str:
    """The first mistake of `exc` as one sentence naming the key path, the bad value and what is accepted."""
    err = _first(exc.errors(include_url=False))
    raw_loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    field, loc = _walk(model, raw_loc)        # loc without the tags pydantic adds for tagged unions
    path = _path(loc)
    kind, given, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind in ("value_error", "assertion_error"):
        message = str(ctx.get("error") or err["msg"]).removeprefix("Value error, ")
        nested = bool(loc) and "properties" in (field or {})
        if not nested and loc and isinstance(loc[-1], str) and message.startswith(f"{loc[-1]} "):
            return path + message[len(loc[-1]):]       # a field validator names its field: name the path
        if path and _NAMES_A_KEY.match(message):
            return f"{path}.{message}"                 # a nested model's sentence names its own key
        return f"{path}: {message}" if path else message
    if kind == "extra_forbidden":
        parent, _ = _walk(model, raw_loc[:-1])
        accepted = ", ".join((parent or {}).get("properties", {})) or "none"
        where = f"{_path(loc[:-1])}: " if loc[:-1] else ""
        return f"{where}unknown key {loc[-1]!r}; accepted: {accepted}."
    if kind == "missing":
        return f"{path} is required."
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        key = str(ctx.get("discriminator", "")).strip("'")
        tags = str(ctx.get("expected_tags", "")).replace("'", "") or ", ".join(_tags(field or {}))
        got = f", got {ctx['tag']!r}" if "tag" in ctx else " (missing)"
        return f"{path + '.' if path else ''}{key} must be one of {tags}{got}."
    accepted = accepts(field) if field else _fallback(err)
    return f"{path} must be {accepted}, got {given!r}."


def _first(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """Of a union's several complaints about one value, the most specific: a constraint over a type."""
    if not errors:
        raise AssertionError("a ValidationError without errors")
    head = errors[0]["loc"]
    same = [e for e in errors if e["loc"][:len(head) - 1] == head[:len(head) - 1]]
    for e in same:
        if e["type"] in ("value_error", "extra_forbidden", "greater_than", "greater_than_equal", "less_than",
                         "less_than_equal", "literal_error"):
            return e
    return errors[0]


def _path(loc: list[Any]) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _fallback(err: dict[str, Any]) -> str:
    return err["msg"].removeprefix("Input should be ").rstrip(".")


def _walk(model: type[BaseModel], loc: list[Any]) -> tuple[dict[str, Any] | None, list[Any]]:
    """The JSON Schema of the value at `loc` (refs resolved; None when the path leaves the schema), and `loc`
    without the tags that pydantic inserts for tagged unions (`params.hid_dim.int.low` -> `params.hid_dim.low`)."""
    root = model.model_json_schema()
    defs = root.get("$defs", {})

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = {**defs[node["$ref"].rsplit("/", 1)[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
        return node

    node: dict[str, Any] | None = resolve(root)
    kept: list[Any] = []
    for part in loc:
        if node is None:
            kept.append(part)
            continue
        options = _alternatives(node, resolve)
        mapping = {tag: ref for o in options for tag, ref in (o.get("discriminator") or {}).get("mapping", {}).items()}
        if isinstance(part, str) and part in mapping:
            node = resolve({"$ref": mapping[part]})
            continue
        if len(options) > 1 and _UNION_MEMBER.match(str(part)) and not any(
                part in o.get("properties", {}) for o in options):
            member = next((o for o in options if o.get("title") == part), None)
            node = member or node      # `baseline.TritonModelConfig.x` -> `baseline.x`, `x.int` -> `x`
            continue
        nxt = None
        for o in options:
            if isinstance(part, int) and "items" in o:
                nxt = resolve(o["items"])
            elif isinstance(part, str) and part in o.get("properties", {}):
                nxt = resolve(o["properties"][part])
            elif isinstance(part, str) and isinstance(o.get("additionalProperties"), dict):
                nxt = resolve(o["additionalProperties"])
            if nxt is not None:
                break
        node = nxt
        kept.append(part)
    return node, kept


def _tags(node: dict[str, Any]) -> list[str]:
    """The tags of a tagged union's schema (looked for inside an anyOf wrapper too)."""
    if node.get("discriminator"):
        return list(node["discriminator"].get("mapping", {}))
    return next((t for o in node.get("anyOf", []) if (t := _tags(o))), [])


def _alternatives(node: dict[str, Any], resolve: Any) -> list[dict[str, Any]]:
    """A schema and, for a union, each of its members (nested unions flattened)."""
    out = [node]
    for o in node.get("anyOf", []) + node.get("oneOf", []):
        out += _alternatives(resolve(o), resolve)
    return out


def accepts(schema: dict[str, Any]) -> str:
    """What a JSON Schema accepts, in words: 'an integer in 2..256', 'one of a, b', 'true or false'."""
    if "accepts" in schema:
        return schema["accepts"]
    if "anyOf" in schema or "oneOf" in schema:
        parts = [accepts(o) for o in schema.get("anyOf", schema.get("oneOf"))]
        return " or ".join(dict.fromkeys(parts))
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    kind = schema.get("type")
    if kind == "null":
        return "null"
    if kind == "boolean":
        return "true or false"
    if kind == "string":
        return "text"
    if kind == "array":
        return f"a list of {_plural(accepts(schema.get('items', {})))}" if schema.get("items") else "a list"
    if kind == "object":
        return "a mapping"
    if kind in ("integer", "number"):
        noun = "an integer" if kind == "integer" else "a number"
        lo, hi = schema.get("minimum"), schema.get("maximum")
        xlo, xhi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        if lo is not None and hi is not None:
            return f"{noun} in {lo}..{hi}" if kind == "integer" else f"{noun} in [{lo}, {hi}]"
        if xlo is not None and xhi is not None:
            return f"{noun} strictly between {xlo} and {xhi}"
        if lo is not None and xhi is not None:
            return f"{noun} in [{lo}, {xhi})"
        if xlo is not None and hi is not None:
            return f"{noun} in ({xlo}, {hi}]"
        noun = "a finite number" if kind == "number" else noun   # infinities and NaN are refused
        for bound, op in ((lo, ">="), (xlo, ">"), (hi, "<="), (xhi, "<")):
            if bound is not None:
                return f"{noun} {op} {bound}"
        return "a finite number" if kind == "number" else noun
    return "a value of the documented form"


def _plural(text: str) -> str:
    for article in ("an ", "a "):
        if text.startswith(article):
            head, _, rest = text[len(article):].partition(" ")
            return f"{head}s {rest}".strip()
    return text
