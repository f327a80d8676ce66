"""The audit's gates: each a `Gate` (`base.py`) in a module of its own, listed in `GATES` in report order.

A new gate is one module with a `Gate` subclass and one line in `GATES`; its bound, if it has one, is a field
of the policy (`mnist_etc.audit.config.AuditConfig`). `judge` runs every gate. Each gate that applies says PASS,
FAIL or INCONCLUSIVE (`base.py`); the audit is PASSED only when every one of them says PASS, FAILED when any
says FAIL, INCONCLUSIVE otherwise. That is an intersection-union test: each gate tests its own unsafe null at
95% (or more), and the audit claims safety only when every null is rejected, so the chance of a wrong PASSED is
at most that of the weakest single gate (Berger 1982) and no multiplicity correction is needed. Whether an
INCONCLUSIVE audit counts as passed is the policy's `inconclusive` ("fail" by default).
"""
from __future__ import annotations

from typing import Any

from mnist_etc.audit.config import AuditConfig
from mnist_etc.audit.gates.base import FAIL, PASS, Gate, GateResult, NotApplicable
from mnist_etc.audit.gates.canary import CanaryGate
from mnist_etc.audit.gates.epsilon import EpsilonGate
from mnist_etc.audit.gates.growth import GrowthGate
from mnist_etc.audit.gates.leakage import LeakageGate
from mnist_etc.audit.gates.membership import MembershipGate
from mnist_etc.audit.gates.membership_epsilon import MembershipEpsilonGate
from mnist_etc.audit.gates.reconstruction import ReconstructionGate

GATES: tuple[Gate, ...] = (EpsilonGate(), LeakageGate(), MembershipGate(), MembershipEpsilonGate(),
                           ReconstructionGate(), CanaryGate(), GrowthGate())
AUDIT_PASSED, AUDIT_FAILED, AUDIT_INCONCLUSIVE = "PASSED", "FAILED", "INCONCLUSIVE"
INTERSECTION_UNION = ("The audit is PASSED only when every gate that applies says PASS: an intersection-union "
                      "test (each gate tests its own unsafe null at 95% or more, and safety is claimed only when "
                      "all are rejected), so no multiplicity correction is needed.")

__all__ = ["AUDIT_FAILED", "AUDIT_INCONCLUSIVE", "AUDIT_PASSED", "GATES", "INTERSECTION_UNION", "Gate",
           "GateResult", "NotApplicable", "audit_verdict", "judge"]


def audit_verdict(verdicts: list[str]) -> str:
    """PASSED when every verdict is PASS, FAILED when any is FAIL, INCONCLUSIVE otherwise."""
    if FAIL in verdicts:
        return AUDIT_FAILED
    return AUDIT_PASSED if all(v == PASS for v in verdicts) else AUDIT_INCONCLUSIVE


def judge(record: dict[str, Any], previous: dict[str, Any] | None, cfg: AuditConfig) -> dict[str, Any]:
    """Every gate's test with its figure, bound and verdict, the gates that do not apply and why, the audit's
    verdict, and `passed` (PASSED, or INCONCLUSIVE under `inconclusive: pass`)."""
    results: list[GateResult] = []
    skipped: list[NotApplicable] = []
    for gate in GATES:
        r = gate.judge(record, previous, cfg)
        if r is None:
            r = NotApplicable(gate.name, "does not apply to this record")
        (skipped if isinstance(r, NotApplicable) else results).append(r)
    verdict = audit_verdict([r.verdict for r in results])
    reasons = [f"{r.name} {r.verdict}: {r.explanation}" for r in results if r.verdict != PASS]
    extra = {k: v for r in results for k, v in r.extra.items()}
    return {"verdict": verdict,
            "passed": verdict == AUDIT_PASSED or (verdict == AUDIT_INCONCLUSIVE and cfg.inconclusive == "pass"),
            "inconclusive_policy": cfg.inconclusive, "tests": [r.as_dict() for r in results],
            "not_applicable": [r.as_dict() for r in skipped], "reasons": reasons,
            "leakage": record["served_attack"]["summary"]["excess_cosine"], "growth": extra.get("growth"),
            "growth_interval": extra.get("growth_interval"),
            "previous": previous.get("created") if previous else None}
