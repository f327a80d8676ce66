"""Prefect tasks of the privacy audit: resolve the champion, attack the served endpoint, record, judge."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from mnist_etc.markdown_images import inline_images
from mnist_etc.audit.config import AuditConfig
from mnist_etc.audit.gates import judge
from mnist_etc.audit.ledger import update_model_ledger
from mnist_etc.audit.run import previous_audit, run_audit
from mnist_etc.audit.report import render_markdown, save_audit
from mnist_etc.audit.canary import describe, run_canary_audit
from mnist_etc.data import load_split
from mnist_etc.model_store import StoredModel
from mnist_etc.tracking.audit import log_audit_run
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
    logger.info("served attack: excess cosine over label-only %+.4f [%+.4f, %+.4f] (non-members %+.4f, member - "
                "non-member gap %+.4f), %.0f images/s through Triton", s["excess_cosine"], s["excess_cosine_low"],
                s["excess_cosine_high"], s["nonmember_excess_cosine"], s["member_gap"],
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
                          table=[{"test": t["name"], "verdict": t["verdict"], "figure": str(t["figure"]),
                                  "bound": t["bound"], "victims to settle": t["n_needed"] or "",
                                  "explanation": t["explanation"]} for t in rec["verdict"]["tests"]]
                          + [{"test": t["name"], "verdict": "does not apply", "figure": "", "bound": "",
                              "victims to settle": "", "explanation": t["explanation"]}
                             for t in rec["verdict"]["not_applicable"]])
    rec["mlflow_run_id"] = log_audit_run(rec, out, tracking_uri)
    return rec


@task(name="privacy-ledger", cache_policy=NO_CACHE, persist_result=False)
def ledger_task(rec: dict[str, Any], stored: StoredModel, model: str, run_id: str | None,
                tracking_uri: str | None) -> str:
    """This audit's entries (its canary run, the statistics of members it publishes) appended to the champion's
    privacy ledger, beside the report and on the champion's MLflow run."""
    path = update_model_ledger(rec, stored, model, run_id, tracking_uri, rec["report_dir"])
    get_run_logger().info("privacy ledger updated: %s", path)
    return str(path)
