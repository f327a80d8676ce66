"""Grid axes: which config.pbtxt settings a benchmark may sweep, and how their values are written.

An axis lists values of one `TritonModelConfig` field, with that field's own type and bounds. It is a
list, a single value, or text like "3:6,20": start:end[:step] ranges, end included, joined by commas
(true/false and names are read as such, so text serves the command line and flow parameters too).
Repeats are rejected, so a grid never measures the same point twice.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Callable

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, create_model, model_serializer

from mnist_etc.config import Settings
from mnist_etc.triton.model_config import BatchSize, TritonModelConfig, as_tuple, no_repeats

# TritonModelConfig fields a grid may sweep; the rest (gpus, version policy) describe deployment, not speed.
GRID_AXES = ("instance_count", "max_batch_size", "max_queue_delay_microseconds", "preferred_batch_size",
             "dynamic_batching", "preserve_ordering", "intra_op_threads", "instance_kind")
_RANGE = re.compile(r"(-?\d+):(-?\d+)(?::(-?\d+))?")
_WORDS = {"true": True, "false": False}


def expand(text: str, name: str = "value") -> list[Any]:
    """"3:6,20" -> [3, 4, 5, 6, 20]: comma-separated integers, ranges (end included), true/false or names."""
    out: list[Any] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if ":" in part:
            m = _RANGE.fullmatch(part.replace(" ", ""))
            start, end, step = (int(m[1]), int(m[2]), int(m[3] or 1)) if m else (1, 0, 0)
            if end < start or step < 1:
                raise ValueError(f"{name} range {part!r} is not accepted; write start:end or start:end:step with "
                                 f"start <= end and step >= 1 (end included), e.g. 3:6.")
            out.extend(range(start, end + 1, step))
        elif part.lstrip("-").isdigit():
            out.append(int(part))
        else:
            out.append(_WORDS.get(part.lower(), part))
    return out


def _values(value: Any, info: ValidationInfo) -> Any:
    """A single value, a list, or text (also as list items) -> the list of values."""
    if isinstance(value, str):
        return expand(value, info.field_name or "value")
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in (expand(v, info.field_name or "value") if isinstance(v, str) else [v])]
    return [value]


def _choices(value: Any) -> Any:
    """Choices of preferred batch sizes, each a list or text such as "8,16,32" ("none" or "" = [])."""
    if not isinstance(value, (list, tuple)):
        return value
    return [[] if isinstance(v, str) and v.strip().lower() in ("none", "[]", "")
            else expand(v) if isinstance(v, str) else v for v in value]


def one_or_list(accepts: str, text: bool = False) -> Callable[[dict[str, Any]], None]:
    """A JSON Schema edit for a list field that the loader also takes as one item (or, with `text`, as text
    such as "3:6,20"), so that editors accept what the loader accepts; `accepts` words its error sentence."""

    def edit(schema: dict[str, Any]) -> None:
        as_list = {k: v for k, v in schema.items() if k not in ("title", "description", "default")}
        alternatives = [as_list, as_list.get("items", {})]
        if text:
            alternatives.append({"type": "string", "description": "e.g. 3:6,20"})
        for key in as_list:
            schema.pop(key)
        schema.update(anyOf=alternatives, accepts=accepts)

    return edit


def axis(element: Any, before: Callable[..., Any] = _values) -> Any:
    """The type of an axis: a non-empty list of `element`, without repeats, kept as a tuple."""
    edit = one_or_list("a value, a non-empty list of values without repeats, or text such as 3:6,20", text=True)
    return Annotated[tuple[element, ...], Field(min_length=1, json_schema_extra=edit),
                     AfterValidator(no_repeats), BeforeValidator(as_tuple), BeforeValidator(before)]


Concurrencies = axis(BatchSize)


def optional(model: type[Settings], name: str) -> tuple[Any, Any]:
    """Field `name` of `model` as an optional field (None = not given), same type, bounds and description."""
    f = model.model_fields[name]
    # A tagged union (the strategy) keeps its tag on the inner type, so that a mistake is named by the tag.
    metadata = [*([Field(discriminator=f.discriminator)] if f.discriminator else []), *f.metadata]
    kind = Annotated[(f.annotation, *metadata)] if metadata else f.annotation
    return kind | None, Field(None, description=f.description, json_schema_extra=f.json_schema_extra)


class Partial(Settings):
    """Settings whose fields are all optional: None means "not given", and is left out of the mapping."""

    @model_serializer(mode="wrap")
    def _given_only(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}

    def given(self) -> dict[str, Any]:
        """The fields given, as validated values."""
        return {k: v for k, v in self if v is not None}


def _axis_field(name: str) -> tuple[Any, Any]:
    f = TritonModelConfig.model_fields[name]
    element = Annotated[(f.annotation, *f.metadata)] if f.metadata else f.annotation
    if name == "preferred_batch_size":
        element = Annotated[element, Field(json_schema_extra={"accepts": (
            "one choice of preferred batch sizes, a list such as [8, 16, 32, 64] ([] = Triton's default)")})]
        return axis(element, _choices) | None, Field(None, description=(
            f"choices of {name} to measure, each a list (e.g. [[], [8, 16, 32, 64]]); {f.description}"))
    text = "1:4,8" if f.annotation is int else "true,false" if f.annotation is bool else "KIND_CPU,KIND_GPU"
    return axis(element) | None, Field(None, description=(
        f"values of {name} to measure (a list, or text like {text}); {f.description}"))


SubGrid = create_model(
    "SubGrid", __base__=Partial, __doc__="Every combination of its axes is one configuration, measured at each of "
                                         "its concurrencies (absent axes: the fixed settings or the defaults).",
    **{name: _axis_field(name) for name in GRID_AXES},
    concurrency=(Concurrencies | None, Field(None, description=(
        "this sub-grid's own concurrency list (requests in flight); default: the benchmark's"))))
