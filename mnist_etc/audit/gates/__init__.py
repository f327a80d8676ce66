"""The audit's gates: each a `Gate` (`base.py`) in a module of its own, listed in `GATES` in report order.

A new gate is one module with a `Gate` subclass and one line in `GATES`; its bound, if it has one, is a field
of the policy (`mnist_etc.audit.config.AuditConfig`). `judge` runs every gate; the audit passes only when every
gate that applies passes.
"""
from __future__ import annotations

from typing import Any

from mnist_etc.audit.config import AuditConfig
from mnist_etc.audit.gates.base import Gate, GateResult
from mnist_etc.audit.gates.canary import CanaryGate
from mnist_etc.audit.gates.epsilon import EpsilonGate
from mnist_etc.audit.gates.growth import GrowthGate
from mnist_etc.audit.gates.leakage import LeakageGate
from mnist_etc.audit.gates.membership import MembershipGate

GATES: tuple[Gate, ...] = (EpsilonGate(), LeakageGate(), MembershipGate(), CanaryGate(), GrowthGate())

__all__ = ["GATES", "Gate", "GateResult", "judge"]


def judge(record: dict[str, Any], previous: dict[str, Any] | None, cfg: AuditConfig) -> dict[str, Any]:
    """Every gate's test with its figure, bound and verdict; passed only if all pass."""
    results = [r for gate in GATES if (r := gate.judge(record, previous, cfg)) is not None]
    tests = [r.as_dict() for r in results]
    reasons = [f"{r.name}: {r.explanation}" for r in results if not r.passed]
    extra = {k: v for r in results for k, v in r.extra.items()}
    return {"passed": not reasons, "tests": tests, "reasons": reasons,
            "leakage": record["served_attack"]["summary"]["excess_cosine"], "growth": extra.get("growth"),
            "previous": previous.get("created") if previous else None}
