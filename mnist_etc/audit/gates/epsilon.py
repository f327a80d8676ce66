"""Gate `epsilon`: the accounted epsilon of the model's training within the policy's bound (deterministic: PASS or
FAIL, never INCONCLUSIVE)."""
from __future__ import annotations

import math
from typing import Any

from mnist_etc.audit.config import AuditConfig
from mnist_etc.audit.gates.base import FAIL, PASS, Gate, GateResult
from mnist_etc.audit.record import epsilon_of


class EpsilonGate(Gate):
    name = "epsilon"

    def judge(self, record: dict[str, Any], previous: dict[str, Any] | None, cfg: AuditConfig) -> GateResult:
        eps = epsilon_of(record)
        if math.isinf(eps):
            ok = cfg.allow_non_private
            return self.result("inf", f"<= {cfg.max_epsilon:g}" + (" (inf allowed)" if ok else ""),
                               PASS if ok else FAIL,
                               "the model has a non-private stage (epsilon = inf)" + (
                                   ", which this policy allows" if ok else
                                   "; the policy does not allow that (allow_non_private is false)"))
        ok = eps <= cfg.max_epsilon
        return self.result(eps, f"<= {cfg.max_epsilon:g}", PASS if ok else FAIL,
                           f"epsilon {eps:.3g} {'within' if ok else 'above'} the bound {cfg.max_epsilon:g}")
