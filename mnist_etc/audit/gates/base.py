"""The interface every audit gate implements, and the test record it returns.

A gate reads the audit record (what `mnist_etc.audit.run.run_audit` measured), the previous audit of the same
lineage and the policy (`AuditConfig`), and returns one `GateResult`, or None when it does not apply to this
record (the canary gate when no canary audit ran). `mnist_etc.audit.gates.GATES` lists them in report order.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mnist_etc.audit.config import AuditConfig


@dataclass(frozen=True)
class GateResult:
    """One test of the audit: its figure, the bound it is held to, the verdict and why, in one sentence."""

    name: str
    figure: Any
    bound: str
    passed: bool
    explanation: str
    extra: dict[str, Any] = field(default_factory=dict)   # figures the verdict carries besides the tests

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "figure": self.figure, "bound": self.bound, "passed": bool(self.passed),
                "explanation": self.explanation}


class Gate(ABC):
    """A test the audited model must pass. Subclasses set `name` and implement `judge`."""

    name: ClassVar[str]

    @abstractmethod
    def judge(self, record: dict[str, Any], previous: dict[str, Any] | None, cfg: AuditConfig) -> GateResult | None:
        """The verdict of this gate on `record`, or None when the gate does not apply to it."""

    def result(self, figure: Any, bound: str, passed: bool, explanation: str, **extra: Any) -> GateResult:
        return GateResult(self.name, figure, bound, bool(passed), explanation, extra)
