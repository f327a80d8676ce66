"""An MLflow run per privacy audit of a champion (experiment `privacy-audit`): the attacks' and membership
figures, the bounds, the verdict and each test's as metrics, the audit policy as parameters, the report's files
as artifacts; the run ends FINISHED when the audit passed, FAILED when it did not.

Verdicts as metrics: `audit_verdict` and `test_<name>_verdict` are 1 for PASS(ED), 0 for FAIL(ED) and 0.5 for
INCONCLUSIVE; `audit_passed` and `test_<name>_passed` are 1 or 0 (the audit's under its `inconclusive` policy).

    >>> run_id = log_audit_run(record, Path("artifacts/audits/<time>"), tracking_uri)   # record: audit.json
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from mnist_etc.tracking.layout import AUDIT_EXPERIMENT, default_tracking_uri

REPORT_FILES = ("audit.json", "report.md", "grid.png", "roc.png")
VERDICT_METRIC = {"PASS": 1.0, "PASSED": 1.0, "FAIL": 0.0, "FAILED": 0.0, "INCONCLUSIVE": 0.5}


def log_audit_run(record: dict[str, Any], report_dir: Path, tracking_uri: str | None) -> str:
    """Log a judged audit (its record, as saved in `report_dir`) to a new run; returns the run id.
    `tracking_uri` defaults to the project's store."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    report_dir = Path(report_dir)
    client = MlflowClient(tracking_uri=tracking_uri or default_tracking_uri())
    exp = client.get_experiment_by_name(AUDIT_EXPERIMENT)
    exp_id = exp.experiment_id if exp else client.create_experiment(AUDIT_EXPERIMENT)
    verdict = record["verdict"]
    run = client.create_run(exp_id, run_name=f"audit-{report_dir.name}", tags={"lineage": record["lineage"],
                            "passed": str(verdict["passed"]), "verdict": verdict.get("verdict", "")})
    metrics: dict[str, float] = {}
    for key, prefix in (("served_attack", "served"), ("in_process_attack", "in_process"),
                        ("own_decoder_attack", "own_decoder")):
        entry = record.get(key, {})
        metrics.update({f"{prefix}_{k}": v for k, v in entry.get("summary", {}).items()})
        metrics.update({f"{prefix}_{k}": entry[k] for k in ("queries", "seconds", "images_per_second") if k in entry})
    m = record["membership"]
    metrics.update(membership_auc=m["auc"], membership_auc_low=m["auc_low"], membership_auc_high=m["auc_high"],
                   membership_advantage=m["advantage"], membership_p_value=m["p_value"],
                   membership_tpr_at_0_1pct_fpr=m["tpr_at_0_1pct_fpr"], membership_tpr_at_1pct_fpr=m["tpr_at_1pct_fpr"],
                   triton_images_per_second=record["served_attack"]["images_per_second"],
                   audit_passed=float(verdict["passed"]))
    if "verdict" in verdict:
        metrics["audit_verdict"] = VERDICT_METRIC[verdict["verdict"]]
    if m.get("membership_epsilon_lb") is not None:
        metrics["membership_epsilon_lb"] = float(m["membership_epsilon_lb"])
    r = record.get("reconstruction") or {}
    for key, name in (("members_identification_rate", "members_identification_rate"),
                      ("members_identification_low", "members_identification_low"),
                      ("members_identification_high", "members_identification_high"),
                      ("non_members_identification_rate", "non_members_identification_rate"),
                      ("bound", "reconstruction_bound"), ("bound_low", "reconstruction_bound_low"),
                      ("bound_high", "reconstruction_bound_high"), ("bound_chance", "reconstruction_bound_chance")):
        if r.get(key) is not None:   # no bound for epsilon = inf: no metric (MLflow metrics cannot be None)
            metrics[name] = float(r[key])
    for t in verdict["tests"]:
        metrics[f"test_{t['name']}_passed"] = float(t["passed"])
        if "verdict" in t:
            metrics[f"test_{t['name']}_verdict"] = VERDICT_METRIC[t["verdict"]]
    c = record.get("canary_audit")
    if c is not None:
        metrics.update(canary_epsilon_lb=c["epsilon_lb"], canary_confidence=c["confidence"],
                       canary_count=c["canaries"], canary_seconds=c["seconds"],
                       canary_audit_consistent=float(c["consistent"]))
        if math.isfinite(float(c["accounted_epsilon"])):
            metrics["canary_accounted_epsilon"] = float(c["accounted_epsilon"])
        for key in ("epsilon_lb_steinke", "expected_epsilon_lb", "fraction_of_accounted", "bug_epsilon_lb"):
            if c.get(key) is not None:
                metrics[f"canary_{key}"] = float(c[key])
        for key in ("rejects_accounted", "catches_2x"):
            if c.get(key) is not None:
                metrics[f"canary_{key}"] = float(bool(c[key]))
    if record["verdict"]["growth"] is not None:
        metrics["excess_cosine_growth"] = record["verdict"]["growth"]
    for k in ("epsilon", "epsilon_rdp"):
        if k in record["privacy"] and math.isfinite(float(record["privacy"][k])):   # MLflow metrics cannot be inf
            metrics[k] = float(record["privacy"][k])
    policy = record["config"]
    params = {**{f"attack_{k}": v for k, v in policy["attack"].items()},
              **{f"canary_{k}": v for k, v in policy["canary"].items()},
              **{k: v for k, v in policy.items() if k not in ("attack", "canary")}}
    now = int(time.time() * 1000)
    client.log_batch(run.info.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                     params=[Param(k, str(v)) for k, v in params.items()])
    for f in REPORT_FILES:
        if (report_dir / f).exists():
            client.log_artifact(run.info.run_id, str(report_dir / f))
    client.set_terminated(run.info.run_id, "FINISHED" if record["verdict"]["passed"] else "FAILED")
    return run.info.run_id
