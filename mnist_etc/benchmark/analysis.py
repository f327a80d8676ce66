"""Pick the best configuration under the p99 budget, and say how much better it is than the baseline.

The best point is the measured point with the highest objective among those whose p99 latency is within
the budget (ties: lower p99). Its configuration is "the best configuration", at that concurrency. The
baseline (the configuration deployed when the run started, by default) is judged the same way: its best
point under the budget; the improvement is best / baseline - 1 on the objective. The baseline at the
best point's concurrency is reported too, since that is the like-for-like comparison.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from mnist_etc.benchmark.results import PointResult

OBJECTIVE_LABELS = {"throughput": "throughput (images/s)",
                    "throughput_per_instance": "throughput per model instance (images/s)",
                    "efficiency": "serving efficiency (served / in-process)"}


@dataclass(frozen=True)
class Analysis:
    objective: str
    budget_ms: float | None
    best: PointResult | None
    baseline_best: PointResult | None                # the baseline's best point under the budget
    baseline_same_concurrency: PointResult | None     # the baseline at the best point's concurrency
    improvement: float | None                        # best / baseline_best - 1 on the objective
    n_ok: int
    n_failed: int
    n_skipped: int
    n_within_budget: int

    def to_dict(self, ceiling_ips: float | None) -> dict[str, Any]:
        def brief(r: PointResult | None) -> dict[str, Any] | None:
            if r is None:
                return None
            return {"point": r.index, "config_id": r.point.config_id, "config": r.point.config.to_dict(),
                    "concurrency": r.point.concurrency, "throughput": r.throughput, "p99_ms": r.p99_ms,
                    "serving_efficiency": r.efficiency(ceiling_ips),
                    "objective": r.objective_value(self.objective, ceiling_ips)}

        return {"objective": self.objective, "p99_budget_ms": self.budget_ms, "best": brief(self.best),
                "baseline_best": brief(self.baseline_best),
                "baseline_same_concurrency": brief(self.baseline_same_concurrency),
                "improvement": self.improvement, "points_ok": self.n_ok, "points_failed": self.n_failed,
                "points_skipped": self.n_skipped, "points_within_budget": self.n_within_budget}


def _best(results: Sequence[PointResult], objective: str, budget_ms: float | None,
          ceiling_ips: float | None) -> PointResult | None:
    eligible = [r for r in results if r.within_budget(budget_ms)
                and r.objective_value(objective, ceiling_ips) is not None]
    if not eligible:
        return None
    return max(eligible, key=lambda r: (r.objective_value(objective, ceiling_ips), -r.p99_ms))


def analyse(results: Sequence[PointResult], objective: str, budget_ms: float | None,
            ceiling_ips: float | None) -> Analysis:
    best = _best(results, objective, budget_ms, ceiling_ips)
    base = [r for r in results if r.point.baseline]
    base_best = _best(base, objective, budget_ms, ceiling_ips)
    same = None
    if best is not None:
        same = next((r for r in base if r.ok and r.point.concurrency == best.point.concurrency), None)
    improvement = None
    if best is not None and base_best is not None:
        b = base_best.objective_value(objective, ceiling_ips)
        if b:
            improvement = best.objective_value(objective, ceiling_ips) / b - 1.0
    return Analysis(objective, budget_ms, best, base_best, same, improvement,
                    n_ok=sum(r.ok for r in results), n_failed=sum(r.status == "failed" for r in results),
                    n_skipped=sum(r.status == "skipped" for r in results),
                    n_within_budget=sum(r.within_budget(budget_ms) for r in results))
