"""Gate `reconstruction`: the served attack's identification rate on training members against the model's
reconstruction bound (`mnist_etc.audit.reconstruction`). Measured above the bound means the DP guarantee is
broken (an accounting or DP-SGD bug): FAIL when the members' 95% interval lies wholly above the bound's, PASS
when wholly at or below, INCONCLUSIVE otherwise. For epsilon = inf there is no bound and the gate does not apply."""
from __future__ import annotations

from typing import Any

from mnist_etc.audit.config import AuditConfig
from mnist_etc.audit.gates.base import (FAIL, INCONCLUSIVE, PASS, Gate, GateResult, NotApplicable, settle_clause,
                                        samples_to_settle)
from mnist_etc.audit.reconstruction import NO_BOUND


class ReconstructionGate(Gate):
    name = "reconstruction"

    def judge(self, record: dict[str, Any], previous: dict[str, Any] | None,
              cfg: AuditConfig) -> GateResult | NotApplicable:
        r = record.get("reconstruction")
        if r is None:
            return self.not_applicable("the record has no reconstruction section (an older audit)")
        if r.get("bound") is None:
            return self.not_applicable(r.get("reason", NO_BOUND))
        rate, low, high = (float(r[k]) for k in ("members_identification_rate", "members_identification_low",
                                                  "members_identification_high"))
        bound, b_low, b_high = float(r["bound"]), float(r["bound_low"]), float(r["bound_high"])
        head = (f"members identified {rate:.3f} [{low:.3f}, {high:.3f}] ({r['members_identified']} of "
                f"{r['members']}) against the bound {bound:.3f} [{b_low:.3f}, {b_high:.3f}]")
        n_needed = None
        if high <= b_low:
            verdict, why = PASS, "the whole interval is within the bound"
        elif low > b_high:
            verdict, why = FAIL, "the whole interval is above the bound: the DP guarantee is broken (a DP bug)"
        else:
            verdict = INCONCLUSIVE
            n_needed = samples_to_settle(int(r["members"]), rate, low - (b_high - b_low) / 2,
                                         high + (b_high - b_low) / 2, bound)
            why = "the intervals overlap; " + settle_clause(n_needed, "victims per group")
        return self.result(rate, f"<= {bound:.3f} (b(non-members' rate); blind attacker {r['bound_chance']:.3f})",
                           verdict, f"{head}: {why}", n_needed)
