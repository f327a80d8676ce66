"""Reading figures from an audit record (audit.json): what the gates, the flow's return value and the
pipeline's summary take from it. Plain dicts only, no TensorFlow."""
from __future__ import annotations

import math
from typing import Any


def epsilon_of(record: dict[str, Any]) -> float:
    """The record's epsilon as a float ("inf" in JSON is infinity)."""
    try:
        return float(record["privacy"]["epsilon"])
    except (KeyError, TypeError, ValueError):
        return math.inf


def comparable_excess(previous: Any, attack: str) -> tuple[float, float, float] | None:
    """The served excess cosine of an earlier audit record with its 95% interval, or None when it has no
    comparable figure (an old-format record measured raw cosine with another attack API, or has no interval;
    another attacker measures something else)."""
    served = previous.get("served_attack") if isinstance(previous, dict) else None
    summary = served.get("summary") if isinstance(served, dict) else None
    if not isinstance(summary, dict) or served.get("attack") != attack:
        return None
    try:
        values = tuple(float(summary[k]) for k in ("excess_cosine", "excess_cosine_low", "excess_cosine_high"))
    except (KeyError, TypeError, ValueError):
        return None
    return values if all(math.isfinite(v) for v in values) else None


def audit_summary(rec: dict[str, Any]) -> dict[str, Any]:
    """The few figures a caller (the flow's return value, the pipeline's summary) needs from an audit record."""
    v = rec["verdict"]
    s = rec["served_attack"]["summary"]
    m = rec["membership"]
    c = rec.get("canary_audit")
    r = rec.get("reconstruction") or {}
    return {"passed": v["passed"], "verdict": v.get("verdict", "PASSED" if v["passed"] else "FAILED"),
            "reasons": v["reasons"],
            "tests": [{k: t.get(k) for k in ("name", "figure", "bound", "verdict", "passed")} for t in v["tests"]],
            "leakage": s["excess_cosine"], "leakage_interval": [s["excess_cosine_low"], s["excess_cosine_high"]],
            "growth": v["growth"], "report": rec["report_dir"], "membership_auc": m["auc"],
            "membership_auc_interval": [m.get("auc_low"), m.get("auc_high")],
            "membership_p_value": m.get("p_value"), "membership_tpr_at_0_1pct_fpr": m.get("tpr_at_0_1pct_fpr"),
            "membership_tpr_at_1pct_fpr": m.get("tpr_at_1pct_fpr"), "epsilon": epsilon_of(rec),
            "membership_epsilon_lb": m.get("membership_epsilon_lb"),
            "reconstruction_bound": r.get("bound"), "reconstruction_bound_chance": r.get("bound_chance"),
            "members_identification_rate": r.get("members_identification_rate"),
            "epsilon_lb": c["epsilon_lb"] if c else None, "canary_audit_consistent": c["consistent"] if c else None,
            "triton_images_per_second": rec["served_attack"]["images_per_second"]}
