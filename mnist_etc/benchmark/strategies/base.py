"""What every search strategy shares: the point it hands out, the interface, and the plan it starts from.

A point is one model configuration at one concurrency, measured in one phase of a strategy (brute force
has one phase; the adaptive search screens, refines and confirms). It carries the measurement settings of
its phase when they differ from the grid's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Protocol, Sequence

from mnist_etc.benchmark.objective import objective_value
from mnist_etc.triton.model_config import TritonModelConfig

if TYPE_CHECKING:
    from mnist_etc.benchmark.perf import MeasurementSettings

# The phases a point can be measured in, in the order a run goes through them.
PHASES = ("measure", "screen", "refine", "confirm")
# (config_id, config, concurrencies ascending, is_baseline): one configuration of a run.
Plan = Sequence[tuple[int, TritonModelConfig, tuple[int, ...], bool]]


@dataclass(frozen=True)
class Point:
    config_id: int                 # index of the configuration in this run (stable across its points)
    config: TritonModelConfig
    concurrency: int
    baseline: bool = False         # the configuration to beat (the deployed one, by default)
    phase: str = "measure"         # one of PHASES
    repeat: int = 0                # confirm phase: which re-measurement (0-based)
    measurement: "MeasurementSettings | None" = None   # None: the grid's own settings


class SearchStrategy(Protocol):
    name: str

    def get_configs(self) -> Iterator[Point]:
        """The points to measure, lazily: results given to set_last_results may change what comes next."""

    def set_last_results(self, results: Sequence[Any]) -> None:
        """Results (objects with `point`, `ok`, `throughput` and `p99_ms`) of the points just measured."""

    @property
    def planned(self) -> int:
        """How many measurements at most (for progress); a strategy may make fewer."""

    @property
    def skipped(self) -> list[tuple[Point, str]]:
        """Grid points it decided not to measure, each with the reason (recorded as skipped rows); complete
        once get_configs() is exhausted."""


def plan_configs(configs: Sequence[tuple[TritonModelConfig, tuple[int, ...]]], baseline: TritonModelConfig | None,
                 baseline_concurrency: tuple[int, ...]) -> list[tuple[int, TritonModelConfig, tuple[int, ...], bool]]:
    """(config_id, config, concurrencies, is_baseline): the grid plus the baseline, measured first.

    The baseline goes first so that a run cut short still has what it must be compared with; when the
    grid already holds it, it is measured once, at the union of both concurrency lists."""
    from mnist_etc.benchmark.reconfigure import same_serving_config   # tritonclient: not on the CLI's --help path

    planned: list[tuple[TritonModelConfig, set[int], bool]] = []
    if baseline is not None:
        planned.append((baseline, set(baseline_concurrency), True))
    for cfg, conc in configs:
        if baseline is not None and same_serving_config(cfg, baseline):
            planned[0][1].update(conc)
        else:
            planned.append((cfg, set(conc), False))
    return [(i, cfg, tuple(sorted(conc)), is_base) for i, (cfg, conc, is_base) in enumerate(planned)]


def objective_of(result: Any, objective: str) -> float:
    """What a strategy ranks by: throughput, or throughput per instance. (Efficiency is throughput over a
    constant ceiling, so it ranks as throughput does.)"""
    ranked = "throughput" if objective == "efficiency" else objective
    return objective_value(ranked, result.throughput, result.point.config.instance_count)
