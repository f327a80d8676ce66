"""Search strategies: which point to measure next, behind one small interface (as in Triton's model_analyzer).

    strategy = make_strategy("brute", configs, budget_ms=20)
    for point in strategy.get_configs():          # a generator: it may look at results as they arrive
        result = measure(point)
        strategy.set_last_results([result])

A point is one model configuration at one concurrency. Points of a configuration come together, in
ascending concurrency, so the server is reconfigured once per configuration. Another strategy (a quick
search, Optuna) only has to implement these two methods and the `planned` and `skipped` properties.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Protocol, Sequence

from mnist_etc.triton.model_config import TritonModelConfig


@dataclass(frozen=True)
class Point:
    config_id: int                 # index of the configuration in this run (stable across its points)
    config: TritonModelConfig
    concurrency: int
    baseline: bool = False         # the configuration to beat (the deployed one, by default)


class SearchStrategy(Protocol):
    def get_configs(self) -> Iterator[Point]:
        """The points to measure, lazily: results given to set_last_results may change what comes next."""

    def set_last_results(self, results: Sequence[Any]) -> None:
        """Results (objects with `point`, `ok` and `p99_ms`) of the points just measured."""

    @property
    def planned(self) -> int:
        """How many points at most (for progress); a strategy may measure fewer."""

    @property
    def skipped(self) -> list[tuple[Point, str]]:
        """Points it decided not to measure, each with the reason (recorded as skipped rows)."""


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


class BruteForceSearch:
    """Every configuration at every concurrency, in order."""

    name = "brute"

    def __init__(self, plan: Sequence[tuple[int, TritonModelConfig, tuple[int, ...], bool]],
                 budget_ms: float | None = None):
        self.plan = list(plan)
        self.budget_ms = budget_ms
        self.results: list[Any] = []
        self._skipped: list[tuple[Point, str]] = []

    @property
    def skipped(self) -> list[tuple[Point, str]]:
        return self._skipped

    @property
    def planned(self) -> int:
        return sum(len(conc) for _, _, conc, _ in self.plan)

    def get_configs(self) -> Iterator[Point]:
        for config_id, cfg, conc, is_base in self.plan:
            for c in conc:
                yield Point(config_id, cfg, c, is_base)

    def set_last_results(self, results: Sequence[Any]) -> None:
        self.results.extend(results)


class PruneOverBudgetSearch(BruteForceSearch):
    """Brute force, but once a configuration's p99 exceeds the budget, its higher concurrencies are skipped.

    Sound because latency grows with concurrency: a point over budget at concurrency c cannot become
    eligible at c' > c. The baseline is always measured in full, since it is what the best is compared with.
    """

    name = "prune_over_budget"

    def __init__(self, plan: Sequence[tuple[int, TritonModelConfig, tuple[int, ...], bool]],
                 budget_ms: float | None = None):
        super().__init__(plan, budget_ms)
        self.over_budget: dict[int, tuple[int, float]] = {}    # config_id -> (concurrency, p99 ms)

    def get_configs(self) -> Iterator[Point]:
        for point in super().get_configs():
            over = self.over_budget.get(point.config_id)
            if over is not None and not point.baseline:
                self._skipped.append((point, f"skipped: p99 {over[1]:.2f} ms at concurrency {over[0]} already "
                                            f"exceeds the {self.budget_ms:g} ms budget"))
                continue
            yield point

    def set_last_results(self, results: Sequence[Any]) -> None:
        super().set_last_results(results)
        for r in results:
            if r.ok and self.budget_ms is not None and r.p99_ms > self.budget_ms:
                self.over_budget.setdefault(r.point.config_id, (r.point.concurrency, r.p99_ms))


STRATEGIES = {s.name: s for s in (BruteForceSearch, PruneOverBudgetSearch)}


def make_strategy(name: str, plan: Sequence[tuple[int, TritonModelConfig, tuple[int, ...], bool]],
                  budget_ms: float | None = None) -> SearchStrategy:
    return STRATEGIES[name](plan, budget_ms)
