"""Gate `canary_audit`: the one-run canary audit's epsilon_lb must not exceed the accounted epsilon (a bound above
the accounted figure means the accounting or the DP-SGD is wrong). Applies when the audit ran one."""
from __future__ import annotations

import math
from typing import Any

from mnist_etc.audit.config import AuditConfig
from mnist_etc.audit.gates.base import Gate, GateResult


class CanaryGate(Gate):
    name = "canary_audit"

    def judge(self, record: dict[str, Any], previous: dict[str, Any] | None,
              cfg: AuditConfig) -> GateResult | None:
        canary = record.get("canary_audit")
        if canary is None:
            return None
        from mnist_etc.audit.canary.audit import describe

        acc = float(canary["accounted_epsilon"])
        return self.result(canary["epsilon_lb"],
                           f"<= accounted epsilon {'inf' if math.isinf(acc) else f'{acc:.3g}'} of the audit run",
                           canary["consistent"], describe(canary))
