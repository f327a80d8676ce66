"""Gate `growth`: how much the served attack's excess cosine grew since the previous audit of the same lineage."""
from __future__ import annotations

from typing import Any

from mnist_etc.audit.config import SERVED_ATTACK, AuditConfig
from mnist_etc.audit.gates.base import Gate, GateResult
from mnist_etc.audit.record import comparable_excess


class GrowthGate(Gate):
    name = "growth"

    def judge(self, record: dict[str, Any], previous: dict[str, Any] | None, cfg: AuditConfig) -> GateResult:
        before = comparable_excess(previous, record["served_attack"].get("attack", SERVED_ATTACK))
        if before is None:
            return self.result(None, f"<= {cfg.growth_margin:g}", True,
                               "no earlier audit of this lineage with an excess cosine of the same attacker to "
                               "compare with" + (f" (the audit of {previous.get('created')} has none)"
                                                 if previous else ""), growth=None)
        growth = record["served_attack"]["summary"]["excess_cosine"] - before
        ok = growth <= cfg.growth_margin
        return self.result(growth, f"<= {cfg.growth_margin:g}", ok,
                           f"excess cosine changed by {growth:+.4f} since the audit of {previous.get('created')} "
                           f"({'within' if ok else 'beyond'} the margin {cfg.growth_margin:g})", growth=growth)
