"""Grid axes: which config.pbtxt settings a benchmark may sweep, and how their values are written.

An axis value is a list, a single value, or (for integers) text like "3:6,20": start:end[:step] ranges,
end included, joined by commas. Repeats are rejected, so a grid never measures the same point twice.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from mnist_etc.errors import UserError
from mnist_etc.triton.model_config import KINDS

# TritonModelConfig fields a grid may sweep; the rest (gpus, version policy) describe deployment, not speed.
GRID_AXES = ("instance_count", "max_batch_size", "max_queue_delay_microseconds", "preferred_batch_size",
             "dynamic_batching", "preserve_ordering", "intra_op_threads", "instance_kind")
INT_AXES = ("instance_count", "max_batch_size", "max_queue_delay_microseconds", "intra_op_threads")
BOOL_AXES = ("dynamic_batching", "preserve_ordering")


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_int_list(value: Any, name: str, low: int) -> tuple[int, ...]:
    """An integer, a list of integers, or text like "3:6,20" (start:end[:step], end included) -> a tuple.

    Order is kept and repeats are rejected, so a grid never measures the same point twice by accident."""
    items: list[Any] = []
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = [value]
    if not parts:
        raise UserError(f"{name} must list at least one integer >= {low}, got {value!r}.")
    for part in parts:
        if isinstance(part, str) and ":" in part:
            try:
                bounds = [int(x) for x in part.split(":")]
            except ValueError:
                bounds = []
            if len(bounds) not in (2, 3) or (len(bounds) == 3 and bounds[2] < 1) or bounds[1] < bounds[0]:
                raise UserError(f"{name} range {part!r} is not accepted; write start:end or start:end:step with "
                                f"start <= end and step >= 1 (end included), e.g. 3:6.")
            items.extend(range(bounds[0], bounds[1] + 1, bounds[2] if len(bounds) == 3 else 1))
        elif isinstance(part, str) and part.lstrip("-").isdigit():
            items.append(int(part))
        else:
            items.append(part)
    for v in items:
        if not is_int(v) or v < low:
            raise UserError(f"{name} values must be integers >= {low}, got {v!r}.")
    if len(set(items)) != len(items):
        raise UserError(f"{name} must not repeat a value, got {items}.")
    return tuple(items)


def axis_values(axis: str, value: Any, where: str) -> tuple[Any, ...]:
    name = f"{where}.{axis}"
    if axis in INT_AXES:
        low = 0 if axis in ("max_queue_delay_microseconds", "intra_op_threads") else 1
        return parse_int_list(value, name, low)
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise UserError(f"{name} must list at least one value, got {value!r}.")
    if axis in BOOL_AXES:
        if not all(isinstance(v, bool) for v in values):
            raise UserError(f"{name} values must be true or false, got {list(values)}.")
    elif axis == "instance_kind":
        if not all(v in KINDS for v in values):
            raise UserError(f"{name} values must be among {', '.join(KINDS)}, got {list(values)}.")
    elif axis == "preferred_batch_size":
        if not all(isinstance(v, (list, tuple)) for v in values):
            raise UserError(f"{name} must be a list of choices, each a list of batch sizes, e.g. [[8, 16, 32, 64]] "
                            f"for one choice or [[], [8, 16]] for two; got {value!r}.")
        values = [tuple(v) for v in values]
    if len(set(values)) != len(values):
        raise UserError(f"{name} must not repeat a value, got {list(values)}.")
    return tuple(values)


@dataclass(frozen=True)
class SubGrid:
    """Every combination of its axes is one configuration, measured at each of its concurrencies."""

    axes: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    concurrency: tuple[int, ...] | None = None   # None: the spec's concurrency list

    @classmethod
    def from_mapping(cls, values: Any, where: str) -> "SubGrid":
        if not isinstance(values, dict):
            raise UserError(f"{where} must be a mapping of axis -> values, got {values!r}.")
        unknown = sorted(set(values) - set(GRID_AXES) - {"concurrency"})
        if unknown:
            raise UserError(f"{where} has unknown axis {', '.join(map(repr, unknown))}; accepted: "
                            f"{', '.join(GRID_AXES)}, concurrency.")
        conc = values.get("concurrency")
        return cls(tuple((k, axis_values(k, v, where)) for k, v in values.items() if k != "concurrency"),
                   None if conc is None else parse_int_list(conc, f"{where}.concurrency", 1))

    def with_axis(self, axis: str, values: tuple[Any, ...]) -> "SubGrid":
        return dataclasses.replace(self, axes=tuple((k, v) for k, v in self.axes if k != axis) + ((axis, values),))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: [list(x) if isinstance(x, tuple) else x for x in v] for k, v in self.axes}
        if self.concurrency is not None:
            out["concurrency"] = list(self.concurrency)
        return out
