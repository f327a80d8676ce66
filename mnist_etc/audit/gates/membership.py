"""Gate `membership`: the membership-inference AUC through the served model, against its bound."""
from __future__ import annotations

from typing import Any

from mnist_etc.audit.config import AuditConfig
from mnist_etc.audit.gates.base import Gate, GateResult


class MembershipGate(Gate):
    name = "membership"

    def judge(self, record: dict[str, Any], previous: dict[str, Any] | None, cfg: AuditConfig) -> GateResult:
        m = record["membership"]
        ok = m["auc_low"] <= cfg.membership_auc_bound
        return self.result(m["auc"], f"95% interval low end <= {cfg.membership_auc_bound:g}", ok,
                           f"membership AUC {m['auc']:.4f} [{m['auc_low']:.4f}, {m['auc_high']:.4f}]: "
                           + ("not shown to exceed the bound" if ok else
                              f"the whole interval is above {cfg.membership_auc_bound:g}"))
