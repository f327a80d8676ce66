"""Brute force: every point of the grid, each measured once with the grid's settings (and a variant that
skips the higher concurrencies of a configuration already over the latency budget)."""
from __future__ import annotations

from typing import Any, Iterator, Literal, Sequence

from pydantic import Field

from mnist_etc.benchmark.strategies.base import Plan, Point
from mnist_etc.config import Settings


class NoOptions(Settings):
    """This strategy takes no options."""


class BruteSettings(Settings):
    """Every configuration at every concurrency, in order."""

    name: Literal["brute"]
    options: NoOptions = Field(default_factory=NoOptions, description="none")


class PruneSettings(Settings):
    """Brute force without the concurrencies above one whose p99 already exceeds the budget."""

    name: Literal["prune_over_budget"]
    options: NoOptions = Field(default_factory=NoOptions, description="none")


class BruteForceSearch:
    """Every configuration at every concurrency, in order."""

    name = "brute"

    def __init__(self, plan: Plan, budget_ms: float | None = None, objective: str = "throughput",
                 measurement: Any = None, options: Any = None, request_batch_size: int = 1):
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

    def __init__(self, plan: Plan, budget_ms: float | None = None, objective: str = "throughput",
                 measurement: Any = None, options: Any = None, request_batch_size: int = 1):
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
