"""Gate `canary_audit`: the one-run canary audit must agree with the accounted epsilon and be strong enough to
have caught a factor-2 error. Applies when the audit ran one on a model with a finite accounted epsilon.

FAIL when the observation contradicts the accounting (`consistent` false: it rejects the accounted trade-off
curve, or epsilon_lb is above the accounted epsilon: the accounting or the DP-SGD code is wrong); PASS when it
agrees and the audit's design would have caught noise mis-scaled by 2x (`catches_2x`); INCONCLUSIVE when it
agrees but was too weak to have caught that (or an older record does not say)."""
from __future__ import annotations

import math
from typing import Any

from mnist_etc.audit.config import AuditConfig
from mnist_etc.audit.gates.base import FAIL, INCONCLUSIVE, PASS, Gate, GateResult, NotApplicable


def _eps(value: Any) -> str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "-"
    return "inf" if math.isinf(x) else f"{x:.3g}"


class CanaryGate(Gate):
    name = "canary_audit"

    def judge(self, record: dict[str, Any], previous: dict[str, Any] | None,
              cfg: AuditConfig) -> GateResult | NotApplicable:
        c = record.get("canary_audit")
        if c is None:
            return self.not_applicable("no canary audit ran (the model is not DP, or --canary-audit off)")
        lb, acc = float(c["epsilon_lb"]), float(c.get("accounted_epsilon", math.inf))
        if math.isinf(acc):
            return self.not_applicable(f"the model is not private (accounted epsilon inf): nothing for the canary "
                                       f"audit to contradict (epsilon_lb {lb:.3f} measures how much one example moves it)")
        rejects = bool(c.get("rejects_accounted", False))
        consistent = bool(c.get("consistent", not rejects and lb <= acc))
        catches = c.get("catches_2x")
        figures = (f"epsilon_lb {lb:.3f}" + (f" (Steinke et al.: {float(c['epsilon_lb_steinke']):.3f})"
                                             if c.get("epsilon_lb_steinke") is not None else "")
                   + f" against the accounted epsilon {_eps(acc)} of the audit run"
                   + (f"; a correct implementation gives about {float(c['expected_epsilon_lb']):.3f} in expectation"
                      if c.get("expected_epsilon_lb") is not None else ""))
        if not consistent:
            verdict = FAIL
            why = ("the observation rejects the accounted trade-off curve" if rejects else
                   "the lower bound is above the accounted epsilon") + ": the accounting or the DP-SGD code is wrong"
        elif catches:
            verdict, why = PASS, "consistent with the accounting, and this design would have caught noise mis-scaled 2x"
        else:
            verdict = INCONCLUSIVE
            why = ("consistent with the accounting, but " + (
                "this design would not have caught noise mis-scaled 2x (too weak to vouch for the accounting)"
                if catches is not None else "the record does not say whether it could have caught noise mis-scaled "
                                           "2x (an older canary audit)"))
        return self.result(lb, f"consistent with the accounted epsilon {_eps(acc)}; catches a 2x error", verdict,
                           f"{figures}: {why}")
