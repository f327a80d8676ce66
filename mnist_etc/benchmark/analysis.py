"""Pick the best configuration under the p99 budget, and say how much better it is than the baseline.

Points are judged as figures: a figure is one configuration at one concurrency, its throughput and p99 the
medians of the measurements it rests on (the confirm phase's re-measurements when there are any, else every
measurement of that point), with their range. When a strategy re-measured its finalists, the best is chosen
among the re-measured figures only: the final ranking rests on repeated measurements, not on one lucky
window. The best is the figure with the highest objective whose p99 is within the budget (ties: lower
p99). The baseline (the configuration deployed when the run started, by default) is judged the same way;
the improvement is best / baseline - 1 on the objective, and the baseline at the best's concurrency is
reported too, since that is the like-for-like comparison. When nothing fits the budget, the verdict says so
and `closest` is the best effort: the figure with the lowest p99.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Sequence

from mnist_etc.benchmark.objective import objective_value
from mnist_etc.benchmark.results import PointResult
from mnist_etc.benchmark.strategies import Point

OBJECTIVE_LABELS = {"throughput": "throughput (images/s)",
                    "throughput_per_instance": "throughput per model instance (images/s)",
                    "efficiency": "serving efficiency (served / in-process)"}


@dataclass(frozen=True)
class Figure:
    """One configuration at one concurrency, as judged: the medians of the measurements it rests on."""

    results: tuple[PointResult, ...]

    @property
    def point(self) -> Point:
        return self.results[0].point

    @property
    def index(self) -> int:
        return self.results[0].index

    @property
    def throughput(self) -> float:
        return statistics.median(r.throughput for r in self.results)

    @property
    def p99_ms(self) -> float:
        return statistics.median(r.p99_ms for r in self.results)

    @property
    def throughput_range(self) -> tuple[float, float]:
        return min(r.throughput for r in self.results), max(r.throughput for r in self.results)

    @property
    def p99_range(self) -> tuple[float, float]:
        return min(r.p99_ms for r in self.results), max(r.p99_ms for r in self.results)

    @property
    def repeated(self) -> bool:
        """Rests on the confirm phase's re-measurements."""
        return any(r.point.phase == "confirm" for r in self.results)

    @property
    def settled(self) -> bool:
        return all(r.settled for r in self.results)

    def efficiency(self, ceiling_ips: float | None) -> float | None:
        return self.throughput / ceiling_ips if ceiling_ips else None

    def objective_range(self, objective: str, ceiling_ips: float | None) -> tuple[float, float] | None:
        values = [v for r in self.results if (v := r.objective_value(objective, ceiling_ips)) is not None]
        return (min(values), max(values)) if values else None

    def within_budget(self, budget_ms: float | None) -> bool:
        return budget_ms is None or self.p99_ms <= budget_ms

    def objective_value(self, objective: str, ceiling_ips: float | None) -> float | None:
        return objective_value(objective, self.throughput, self.point.config.instance_count, ceiling_ips)

    def brief(self, objective: str, ceiling_ips: float | None) -> dict[str, Any]:
        return {"point": self.index, "points": [r.index for r in self.results], "config_id": self.point.config_id,
                "config": self.point.config.to_dict(), "concurrency": self.point.concurrency,
                "throughput": self.throughput, "p99_ms": self.p99_ms,
                "throughput_range": list(self.throughput_range), "p99_range": list(self.p99_range),
                "measurements": len(self.results), "repeated": self.repeated, "settled": self.settled,
                "serving_efficiency": self.efficiency(ceiling_ips),
                "objective": self.objective_value(objective, ceiling_ips)}


def figures(results: Sequence[PointResult]) -> list[Figure]:
    """A figure per measured (configuration, concurrency), in the order first measured."""
    groups: dict[tuple[int, int], list[PointResult]] = {}
    for r in results:
        if r.ok:
            groups.setdefault((r.point.config_id, r.point.concurrency), []).append(r)
    out = []
    for rs in groups.values():
        confirmed = [r for r in rs if r.point.phase == "confirm"]
        out.append(Figure(tuple(confirmed or rs)))
    return out


@dataclass(frozen=True)
class Analysis:
    objective: str
    budget_ms: float | None
    best: Figure | None
    baseline_best: Figure | None                     # the baseline's best figure under the budget
    baseline_same_concurrency: Figure | None         # the baseline at the best's concurrency
    improvement: float | None                        # best / baseline_best - 1 on the objective
    figures: tuple[Figure, ...]                      # every measured point, as judged
    closest: Figure | None                           # lowest p99 (the best effort when nothing fits)
    n_ok: int
    n_failed: int
    n_skipped: int
    n_within_budget: int
    n_unsettled: int

    @property
    def ranking(self) -> list[Figure]:
        """The re-measured figures, best first: the final ranking."""
        return sorted((f for f in self.figures if f.repeated),
                      key=lambda f: (not f.within_budget(self.budget_ms), -(f.objective_value(self.objective, 0)
                                                                            or f.throughput)))

    def runner_up(self) -> Figure | None:
        """The second of the final ranking under the budget (None without a best or with only one)."""
        fitting = [f for f in self.ranking if f.within_budget(self.budget_ms)]
        return fitting[1] if self.best is not None and len(fitting) > 1 else None

    def top_two_apart(self, ceiling_ips: float | None) -> bool | None:
        """Whether the best is ahead of the runner-up beyond the spread of their re-measurements (its lowest
        above the runner-up's highest); False: they cannot be told apart, either may be the better; None:
        no runner-up."""
        second = self.runner_up()
        if second is None:
            return None
        best = self.best.objective_range(self.objective, ceiling_ips)
        other = second.objective_range(self.objective, ceiling_ips)
        return None if best is None or other is None else best[0] > other[1]

    def clear_gain(self, ceiling_ips: float | None) -> bool | None:
        """Whether the best beats the baseline beyond the spread of their measurements (its lowest measurement
        above the baseline's highest); None when there is nothing to compare."""
        if self.best is None or self.baseline_best is None or self.best is self.baseline_best:
            return None
        best = self.best.objective_range(self.objective, ceiling_ips)
        base = self.baseline_best.objective_range(self.objective, ceiling_ips)
        return None if best is None or base is None else best[0] > base[1]

    @property
    def verdict(self) -> str:
        """met: a configuration fits the budget; not_met: none does (best effort in `closest`); no_budget;
        nothing_measured: no point was measured at all."""
        if not self.figures:
            return "nothing_measured"
        if self.budget_ms is None:
            return "no_budget"
        return "met" if self.best is not None else "not_met"

    def to_dict(self, ceiling_ips: float | None) -> dict[str, Any]:
        def brief(f: Figure | None) -> dict[str, Any] | None:
            return f.brief(self.objective, ceiling_ips) if f is not None else None

        return {"objective": self.objective, "p99_budget_ms": self.budget_ms, "verdict": self.verdict,
                "best": brief(self.best), "baseline_best": brief(self.baseline_best),
                "baseline_same_concurrency": brief(self.baseline_same_concurrency), "closest": brief(self.closest),
                "ranking": [brief(f) for f in self.ranking],
                "improvement": self.improvement, "improvement_clear": self.clear_gain(ceiling_ips),
                "runner_up": brief(self.runner_up()), "top_two_apart": self.top_two_apart(ceiling_ips),
                "points_ok": self.n_ok, "points_failed": self.n_failed,
                "points_skipped": self.n_skipped, "points_within_budget": self.n_within_budget,
                "points_unsettled": self.n_unsettled}


def _best(figs: Sequence[Figure], objective: str, budget_ms: float | None,
          ceiling_ips: float | None) -> Figure | None:
    if any(f.repeated for f in figs):
        figs = [f for f in figs if f.repeated]
    eligible = [f for f in figs if f.within_budget(budget_ms) and f.objective_value(objective, ceiling_ips) is not None]
    if not eligible:
        return None
    return max(eligible, key=lambda f: (f.objective_value(objective, ceiling_ips), -f.p99_ms))


def analyse(results: Sequence[PointResult], objective: str, budget_ms: float | None,
            ceiling_ips: float | None) -> Analysis:
    figs = figures(results)
    best = _best(figs, objective, budget_ms, ceiling_ips)
    base = [f for f in figs if f.point.baseline]
    base_best = _best(base, objective, budget_ms, ceiling_ips)
    same = None
    if best is not None:
        same = next((f for f in base if f.point.concurrency == best.point.concurrency), None)
    improvement = None
    if best is not None and base_best is not None:
        b = base_best.objective_value(objective, ceiling_ips)
        if b:
            improvement = best.objective_value(objective, ceiling_ips) / b - 1.0
    judged = [f for f in figs if f.repeated] or figs
    closest = min(judged, key=lambda f: f.p99_ms) if judged else None
    return Analysis(objective, budget_ms, best, base_best, same, improvement, tuple(figs), closest,
                    n_ok=sum(r.ok for r in results), n_failed=sum(r.status == "failed" for r in results),
                    n_skipped=sum(r.status == "skipped" for r in results),
                    n_within_budget=sum(r.within_budget(budget_ms) for r in results),
                    n_unsettled=sum(r.ok and not r.settled for r in results))
