"""Gate `growth`: how much the served attack's excess cosine grew since the previous audit of the same lineage.

The two audits' intervals are compared, not their point estimates: the difference of the excess cosines with
half-width sqrt(h1^2 + h2^2) (the two audits attack independent draws, so their errors add in quadrature).
PASS when that interval's high end is within the margin, FAIL when its low end is beyond it, INCONCLUSIVE
otherwise. With no earlier comparable audit the gate does not apply: there is nothing to test, and a PASS would
count as evidence of safety in the audit's verdict that no measurement gave."""
from __future__ import annotations

import math
from typing import Any

from mnist_etc.audit.config import SERVED_ATTACK, AuditConfig
from mnist_etc.audit.gates.base import Gate, GateResult, NotApplicable
from mnist_etc.audit.record import comparable_excess


class GrowthGate(Gate):
    name = "growth"

    def judge(self, record: dict[str, Any], previous: dict[str, Any] | None,
              cfg: AuditConfig) -> GateResult | NotApplicable:
        before = comparable_excess(previous, record["served_attack"].get("attack", SERVED_ATTACK))
        if before is None:
            return self.not_applicable(
                "no earlier audit of this lineage with an excess-cosine interval of the same attacker to compare "
                "with" + (f" (the audit of {previous.get('created')} has none)" if previous else ""))
        s = record["served_attack"]["summary"]
        value, low, high = before
        growth = s["excess_cosine"] - value
        half = math.hypot((s["excess_cosine_high"] - s["excess_cosine_low"]) / 2, (high - low) / 2)
        result = self.interval(growth, growth - half, growth + half, cfg.growth_margin,
                               int(s.get("victims_per_group", 0) or 0), "victims per group in each audit",
                               f"excess cosine change since the audit of {previous.get('created')}",
                               f"95% interval <= {cfg.growth_margin:g}")
        return self.result(result.figure, result.bound, result.verdict, result.explanation, result.n_needed,
                           growth=growth, growth_interval=[growth - half, growth + half])
