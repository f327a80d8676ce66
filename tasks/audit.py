"""Prefect tasks of the privacy audit: resolve the champion, attack the served endpoint, record, judge."""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from mnist_etc.markdown_images import inline_images
from mnist_etc.privacy.audit import AuditConfig, judge, previous_audit, run_audit
from mnist_etc.privacy.audit_report import render_markdown, save_audit
from mnist_etc.privacy.canary import describe, run_canary_audit
from mnist_etc.data import load_split
from mnist_etc.model_store import StoredModel
from mnist_etc.triton.client import ClassifierClient


@task(name="attack-served-model", cache_policy=NO_CACHE, persist_result=False, retries=1, retry_delay_seconds=5)
def attack_served_task(stored: StoredModel, grpc_url: str, served: str, version: int,
                       cfg: AuditConfig) -> dict[str, Any]:
    logger = get_run_logger()
    split = load_split(stored.data_config)
    with ClassifierClient(grpc_url, served, version) as client:
        logger.info("attacking %s v%d at %s (%s) with %d members + %d non-members x %d samples x %d iterations",
                    served, version, grpc_url, cfg.attack.attack, cfg.attack.victims, cfg.attack.victims,
                    cfg.attack.n_samples, cfg.attack.n_iter)
        rec = run_audit(stored, split, client.infer, cfg, progress=False)
    rec["served"] = {"url": grpc_url, "model": served, "version": version}
    s = rec["served_attack"]["summary"]
    logger.info("served attack: excess cosine over label-only %+.4f [%+.4f, %+.4f] (members %+.4f, non-members "
                "%+.4f), %.0f images/s through Triton", s["excess_cosine"], s["excess_cosine_low"],
                s["excess_cosine_high"], s["member_excess_cosine"], s["nonmember_excess_cosine"],
                rec["served_attack"]["images_per_second"])
    return rec


@task(name="canary-audit", cache_policy=NO_CACHE, persist_result=False)
def canary_audit_task(stored: StoredModel, cfg: AuditConfig) -> dict[str, Any]:
    """One training run of the champion's configuration with canaries: epsilon_lb beside the accounted epsilon."""
    logger = get_run_logger()
    logger.info("one-run canary audit: %d canaries, one training run of the champion's configuration",
                cfg.canary.canaries)
    rec = run_canary_audit(stored.config, load_split(stored.data_config), cfg.canary, progress=False)
    rec.pop("_scores"), rec.pop("_included")
    logger.info("canary audit: %s (%.0f s)", describe(rec), rec["seconds"])
    return rec


@task(name="judge-and-report", cache_policy=NO_CACHE, persist_result=False)
def report_task(rec: dict[str, Any], lineage: str, cfg: AuditConfig, audits_dir: str, out_name: str,
                tracking_uri: str | None) -> dict[str, Any]:
    rec["lineage"] = lineage
    previous = previous_audit(Path(audits_dir), lineage)
    rec["verdict"] = judge(rec, previous, cfg)
    # Recorded in audit.json too, so a caller that only finds the record (the pipeline, after a failed
    # audit) still knows where the report and images are.
    rec["report_dir"] = str(Path(audits_dir) / out_name)
    out = save_audit(rec, Path(audits_dir) / out_name)
    create_markdown_artifact(key="privacy-audit", markdown=inline_images(render_markdown(rec), out),
                             description=f"Privacy audit of {lineage}")
    create_table_artifact(key="privacy-audit-tests", description=f"Privacy audit of {lineage}: each test",
                          table=[{"test": t["name"], "passed": t["passed"], "figure": str(t["figure"]),
                                  "bound": t["bound"], "explanation": t["explanation"]} for t in rec["verdict"]["tests"]])
    rec["mlflow_run_id"] = _log_to_mlflow(rec, out, tracking_uri)
    return rec


def _log_to_mlflow(rec: dict[str, Any], out: Path, tracking_uri: str | None) -> str:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    from mnist_etc.mlflow_layout import default_tracking_uri

    client = MlflowClient(tracking_uri=tracking_uri or default_tracking_uri())
    exp = client.get_experiment_by_name("privacy-audit")
    exp_id = exp.experiment_id if exp else client.create_experiment("privacy-audit")
    run = client.create_run(exp_id, run_name=f"audit-{out.name}", tags={"lineage": rec["lineage"],
                            "passed": str(rec["verdict"]["passed"])})
    metrics: dict[str, float] = {}
    for key, prefix in (("served_attack", "served"), ("in_process_attack", "in_process"),
                        ("own_decoder_attack", "own_decoder")):
        entry = rec.get(key, {})
        metrics.update({f"{prefix}_{k}": v for k, v in entry.get("summary", {}).items()})
        metrics.update({f"{prefix}_{k}": entry[k] for k in ("queries", "seconds", "images_per_second") if k in entry})
    m = rec["membership"]
    metrics.update(membership_auc=m["auc"], membership_auc_low=m["auc_low"], membership_auc_high=m["auc_high"],
                   membership_advantage=m["advantage"], membership_p_value=m["p_value"],
                   membership_tpr_at_0_1pct_fpr=m["tpr_at_0_1pct_fpr"], membership_tpr_at_1pct_fpr=m["tpr_at_1pct_fpr"],
                   triton_images_per_second=rec["served_attack"]["images_per_second"],
                   audit_passed=float(rec["verdict"]["passed"]))
    for t in rec["verdict"]["tests"]:
        metrics[f"test_{t['name']}_passed"] = float(t["passed"])
    c = rec.get("canary_audit")
    if c is not None:
        metrics.update(canary_epsilon_lb=c["epsilon_lb"], canary_confidence=c["confidence"],
                       canary_count=c["canaries"], canary_seconds=c["seconds"],
                       canary_audit_consistent=float(c["consistent"]))
        if math.isfinite(float(c["accounted_epsilon"])):
            metrics["canary_accounted_epsilon"] = float(c["accounted_epsilon"])
    if rec["verdict"]["growth"] is not None:
        metrics["excess_cosine_growth"] = rec["verdict"]["growth"]
    for k in ("epsilon", "epsilon_rdp"):
        if k in rec["privacy"] and math.isfinite(float(rec["privacy"][k])):   # MLflow metrics cannot be inf
            metrics[k] = float(rec["privacy"][k])
    policy = rec["config"]
    params = {**{f"attack_{k}": v for k, v in policy["attack"].items()},
              **{f"canary_{k}": v for k, v in policy["canary"].items()},
              **{k: v for k, v in policy.items() if k not in ("attack", "canary")}}
    now = int(time.time() * 1000)
    client.log_batch(run.info.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                     params=[Param(k, str(v)) for k, v in params.items()])
    for f in ("audit.json", "report.md", "grid.png", "roc.png"):
        if (out / f).exists():
            client.log_artifact(run.info.run_id, str(out / f))
    client.set_terminated(run.info.run_id, "FINISHED" if rec["verdict"]["passed"] else "FAILED")
    return run.info.run_id
