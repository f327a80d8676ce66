"""Gate `excess_leakage`: the served attack's excess cosine over the label-only baseline, against its bound."""
from __future__ import annotations

from typing import Any

from mnist_etc.audit.config import AuditConfig
from mnist_etc.audit.gates.base import Gate, GateResult


class LeakageGate(Gate):
    name = "excess_leakage"

    def judge(self, record: dict[str, Any], previous: dict[str, Any] | None, cfg: AuditConfig) -> GateResult:
        s = record["served_attack"]["summary"]
        low = s["excess_cosine_low"]
        ok = low <= cfg.leakage_bound
        return self.result(s["excess_cosine"], f"95% interval low end <= {cfg.leakage_bound:g}", ok,
                           f"excess cosine over the label-only baseline {s['excess_cosine']:+.4f} "
                           f"[{low:+.4f}, {s['excess_cosine_high']:+.4f}]: "
                           + ("not shown to exceed the bound" if ok else
                              f"the whole interval is above {cfg.leakage_bound:g}"))
