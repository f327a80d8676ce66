"""Gate `membership_epsilon`: the membership attack turned into an empirical epsilon lower bound must not exceed
the accounted epsilon of a DP model (a contradiction means the accounting or the DP-SGD code is wrong).

`membership_epsilon_lb` (mnist_etc.audit.membership, bounds.membership_epsilon_bound) holds with 95% confidence,
so the test is deterministic given it: FAIL above the accounted epsilon, PASS otherwise. For epsilon = inf
there is nothing to contradict and the gate does not apply; the figure is still reported."""
from __future__ import annotations

import math
from typing import Any

from mnist_etc.audit.config import AuditConfig
from mnist_etc.audit.gates.base import FAIL, PASS, Gate, GateResult, NotApplicable
from mnist_etc.audit.record import epsilon_of


class MembershipEpsilonGate(Gate):
    name = "membership_epsilon"

    def judge(self, record: dict[str, Any], previous: dict[str, Any] | None,
              cfg: AuditConfig) -> GateResult | NotApplicable:
        lb = record["membership"].get("membership_epsilon_lb")
        if lb is None:
            return self.not_applicable("the record has no membership_epsilon_lb (an older audit)")
        eps = epsilon_of(record)
        if math.isinf(eps):
            return self.not_applicable(f"epsilon = inf: no accounted epsilon to check membership_epsilon_lb "
                                       f"{float(lb):.3f} against")
        lb = float(lb)
        ok = lb <= eps
        return self.result(lb, f"<= accounted epsilon {eps:.3g}", PASS if ok else FAIL,
                           f"membership_epsilon_lb {lb:.3f} (95%) "
                           + (f"within the accounted epsilon {eps:.3g}" if ok else
                              f"above the accounted epsilon {eps:.3g}: the accounting or the DP-SGD code is wrong"))
