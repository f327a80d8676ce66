"""Gate `membership`: the membership-inference AUC through the served model, against its bound. PASS only when
the whole 95% interval is at or below the bound; the bound's reason is in `AuditConfig.membership_auc_bound`."""
from __future__ import annotations

from typing import Any

from mnist_etc.audit.bounds import pure_dp_epsilon_for_auc
from mnist_etc.audit.config import AuditConfig
from mnist_etc.audit.gates.base import Gate, GateResult


class MembershipGate(Gate):
    name = "membership"

    def judge(self, record: dict[str, Any], previous: dict[str, Any] | None, cfg: AuditConfig) -> GateResult:
        m = record["membership"]
        bound = cfg.membership_auc_bound
        eps = pure_dp_epsilon_for_auc(bound) if bound < 1 else float("inf")
        return self.interval(m["auc"], m["auc_low"], m["auc_high"], bound, int(m.get("n_members", 0) or 0),
                             "members (and as many non-members)", "membership AUC",
                             f"95% interval <= {bound:g} (most a pure {eps:.2f}-DP model allows)", fmt=".4f")
