"""The interface every audit gate implements, the test record it returns, and the three verdicts.

A gate reads the audit record (what `mnist_etc.audit.run.run_audit` measured), the previous audit of the same
lineage and the policy (`AuditConfig`), and returns one `GateResult`, or a `NotApplicable` saying why the gate
does not apply to this record (the canary gate when no canary audit ran; None is read the same way, without a
reason). `mnist_etc.audit.gates.GATES` lists them in report order.

The burden of proof is on safety. A gate with a 95% interval says PASS only when the whole interval lies on the
safe side of its bound, FAIL when it lies wholly on the unsafe side, and INCONCLUSIVE otherwise, with roughly
how many victims (or samples) would settle it: the half-width shrinks as 1 / sqrt(n), so it falls below the
distance from the estimate to the bound at n x (half-width / |estimate - bound|)^2.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mnist_etc.audit.config import AuditConfig

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"
VERDICTS = (PASS, FAIL, INCONCLUSIVE)


@dataclass(frozen=True)
class GateResult:
    """One test of the audit: its figure, the bound it is held to, the verdict and why, in one sentence."""

    name: str
    figure: Any
    bound: str
    verdict: str
    explanation: str
    n_needed: int | None = None      # INCONCLUSIVE interval gates: about how many victims/samples would settle it
    extra: dict[str, Any] = field(default_factory=dict)   # figures the verdict carries besides the tests

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}.")

    @property
    def passed(self) -> bool:
        return self.verdict == PASS

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "figure": self.figure, "bound": self.bound, "verdict": self.verdict,
                "passed": self.passed, "n_needed": self.n_needed, "explanation": self.explanation}


@dataclass(frozen=True)
class NotApplicable:
    """A gate that does not apply to this record, and why (shown in the report, not counted in the verdict)."""

    name: str
    explanation: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "explanation": self.explanation}


def interval_verdict(low: float, high: float, bound: float) -> str:
    """PASS when the interval is wholly at or below `bound`, FAIL when wholly above it, INCONCLUSIVE otherwise."""
    if high <= bound:
        return PASS
    if low > bound:
        return FAIL
    return INCONCLUSIVE


def samples_to_settle(n: int, estimate: float, low: float, high: float, bound: float) -> int | None:
    """About how many samples (in the units of `n`) would put the interval on one side of `bound`, if the
    estimate stayed where it is: n x (half-width / |estimate - bound|)^2. None when the estimate sits on the
    bound (no sample size settles it)."""
    gap = abs(estimate - bound)
    if gap == 0 or not math.isfinite(gap):
        return None
    half_width = (high - low) / 2
    return max(int(n) + 1, math.ceil(n * (half_width / gap) ** 2))


def settle_clause(n_needed: int | None, unit: str) -> str:
    if n_needed is None:
        return "the estimate sits on the bound: no number of " + unit + " settles it"
    return f"about {n_needed:,} {unit} would settle it if the estimate held"


class Gate(ABC):
    """A test the audited model must pass. Subclasses set `name` and implement `judge`."""

    name: ClassVar[str]

    @abstractmethod
    def judge(self, record: dict[str, Any], previous: dict[str, Any] | None,
              cfg: AuditConfig) -> GateResult | NotApplicable | None:
        """The verdict of this gate on `record`, or why it does not apply to it."""

    def result(self, figure: Any, bound: str, verdict: str, explanation: str, n_needed: int | None = None,
               **extra: Any) -> GateResult:
        return GateResult(self.name, figure, bound, verdict, explanation, n_needed, extra)

    def not_applicable(self, explanation: str) -> NotApplicable:
        return NotApplicable(self.name, explanation)

    def interval(self, figure: float, low: float, high: float, bound: float, n: int, unit: str, what: str,
                 bound_text: str, fmt: str = "+.4f") -> GateResult:
        """The three-way verdict of an interval gate: `what` names the figure in the explanation."""
        verdict = interval_verdict(low, high, bound)
        n_needed = samples_to_settle(n, figure, low, high, bound) if verdict == INCONCLUSIVE else None
        head = f"{what} {figure:{fmt}} [{low:{fmt}}, {high:{fmt}}] (95%)"
        if verdict == PASS:
            why = f"the whole interval is at or below {bound:g}"
        elif verdict == FAIL:
            why = f"the whole interval is above {bound:g}"
        else:
            why = f"the interval straddles {bound:g}, so neither safe nor unsafe is shown; " + settle_clause(
                n_needed, unit)
        return self.result(figure, bound_text, verdict, f"{head}: {why}", n_needed)
