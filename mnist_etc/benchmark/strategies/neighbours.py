"""The configurations of a plan as a lattice: which settings vary, and a configuration's neighbours on it.

The hill climb of the adaptive search (screen: climb) moves from a configuration to one that differs in one
setting by one step (the next value of that setting the grid holds), as Model Analyzer's quick search does
with radius 1:

    lattice = Lattice(plan)
    lattice.axes                                   # ('instance_count', 'max_batch_size', ...)
    lattice.neighbours(config_id, concurrency=32, request_batch_size=1, higher_concurrency=64)  # [(cid, c)]

Max batch sizes that form the same batches are one step: at concurrency c with b images per request at most
c x b images are ever queued, so every max batch size >= c x b batches alike, and a climb at that concurrency
steps over them (from 64 at c 32 it goes down to 16, not to 32), and a larger one is measured one concurrency
higher, the only place it can differ.
"""
from __future__ import annotations

from typing import Any

from mnist_etc.benchmark.strategies.base import Plan
from mnist_etc.triton.model_config import TritonModelConfig

BATCH_AXIS = "max_batch_size"


class Lattice:
    def __init__(self, plan: Plan):
        configs = {cid: cfg for cid, cfg, _, _ in plan}
        self.axes = tuple(name for name in TritonModelConfig.model_fields
                          if len({_key(getattr(cfg, name)) for cfg in configs.values()}) > 1)
        self.values = {axis: sorted({_key(getattr(cfg, axis)) for cfg in configs.values()}) for axis in self.axes}
        self._by_key = {self._key_of(cfg): cid for cid, cfg in configs.items()}
        self._configs = configs

    def _key_of(self, cfg: TritonModelConfig) -> tuple[Any, ...]:
        return tuple(_key(getattr(cfg, axis)) for axis in self.axes)

    def centre(self) -> int:
        """The configuration nearest the middle of every axis (where a climb starts without a baseline)."""
        def distance(cid: int) -> float:
            cfg = self._configs[cid]
            return sum(abs(self.values[a].index(_key(getattr(cfg, a))) - (len(self.values[a]) - 1) / 2) for a in self.axes)
        return min(self._configs, key=lambda cid: (distance(cid), cid))

    def nearest(self, cid: int) -> int | None:
        """The other configuration fewest steps away (a baseline off the grid starts the climb there)."""
        here = self._configs[cid]

        def steps(other: int) -> tuple[int, int, int]:
            cfg = self._configs[other]
            moved = [abs(self.values[a].index(_key(getattr(cfg, a))) - self.values[a].index(_key(getattr(here, a))))
                     for a in self.axes]
            return sum(m > 0 for m in moved), sum(moved), other
        others = [other for other in self._configs if other != cid]
        return min(others, key=steps) if others else None

    def neighbours(self, cid: int, concurrency: int, request_batch_size: int = 1,
                   higher_concurrency: int | None = None) -> list[tuple[int, int]]:
        """The configurations one step away on one axis (down before up, in axis order), each with the
        concurrency to measure it at: `concurrency`, except a larger max batch size where every batch at
        `concurrency` fits already: it can only differ at `higher_concurrency` (none: not a neighbour)."""
        cfg = self._configs[cid]
        out = []
        for axis in self.axes:
            values, here = self.values[axis], _key(getattr(cfg, axis))
            i = values.index(here)
            lower, higher = values[:i], values[i + 1:]
            steps = [(lower[-1], concurrency)] if lower else []
            if axis == BATCH_AXIS:
                queued = concurrency * request_batch_size   # at most this many images wait at once
                lower = [v for v in lower if v < min(here, queued)]
                steps = [(lower[-1], concurrency)] if lower else []
                if higher and here >= queued:
                    higher = higher if higher_concurrency and here < higher_concurrency * request_batch_size else []
                    steps += [(higher[0], higher_concurrency)] if higher else []
                    higher = []
            steps += [(higher[0], concurrency)] if higher else []
            for step, at in steps:
                key = self._key_of(cfg.model_copy(update={axis: step}))
                if key in self._by_key:
                    out.append((self._by_key[key], at))
        return out

    def describe(self, cid: int) -> str:
        cfg = self._configs[cid]
        return ", ".join(f"{axis} {getattr(cfg, axis)}" for axis in self.axes)


def _key(value: Any) -> Any:
    """Values of one setting sort and compare as this (lists, e.g. preferred batch sizes, as tuples)."""
    return tuple(value) if isinstance(value, (list, tuple)) else value
