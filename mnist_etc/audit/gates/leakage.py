"""Gate `excess_leakage`: the served attack's excess cosine over the label-only baseline, against its bound.
PASS only when the whole 95% interval is at or below the bound (burden of proof on safety)."""
from __future__ import annotations

from typing import Any

from mnist_etc.audit.config import AuditConfig
from mnist_etc.audit.gates.base import Gate, GateResult


class LeakageGate(Gate):
    name = "excess_leakage"

    def judge(self, record: dict[str, Any], previous: dict[str, Any] | None, cfg: AuditConfig) -> GateResult:
        s = record["served_attack"]["summary"]
        n = int(s.get("victims_per_group", 0) or 0)
        return self.interval(s["excess_cosine"], s["excess_cosine_low"], s["excess_cosine_high"], cfg.leakage_bound,
                             n, "victims per group", "excess cosine over the label-only baseline",
                             f"95% interval <= {cfg.leakage_bound:g}")
