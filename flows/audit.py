"""Prefect flow `privacy-audit`: audit the current champion where it is deployed (nightly at 02:00 UTC).

    python -m flows.audit                        # or: mnist-etc audit; or the deployment privacy-audit/nightly
    from flows.audit import privacy_audit; privacy_audit(policy=AuditConfig(leakage_bound=0.8))

The champion is the MLflow model `models:/<name>@champion` (default: the registered model of the newest
sweep's winner.json). Its served version is the newest Triton model version exported from it. The
public-prior attacker scores its candidates through Triton (an embedded server started for the audit, or
`triton_url`) on training members and held-out non-members; the in-process and own-decoder attacks run
beside it for the record, and a membership test runs through Triton too. When the champion is DP (or
`policy.canary_audit` is true), the one-run canary audit trains its configuration once more with
`policy.canary.canaries` canaries and bounds epsilon from below. `policy` is the audit policy
(`mnist_etc.audit.run.AuditConfig`; in the Prefect UI a form, with `--params '{"policy": {...}}'` a
mapping validated before the run starts). Each test says PASS, FAIL or INCONCLUSIVE, PASS only when its 95%
interval lies wholly on the safe side of its bound (`mnist_etc.audit.gates`): epsilon (finite unless
`allow_non_private`, at most `max_epsilon`); the excess leakage's interval at or below `leakage_bound`; the
membership AUC's at or below `membership_auc_bound`; membership_epsilon_lb at most the accounted epsilon; the
members' identification rate within the reconstruction bound of the model's PLD; the canary audit consistent
with the accounting and strong enough to catch a 2x error; the growth of the excess leakage since the previous
audit of the lineage within `growth_margin`. The audit is PASSED only when every test that applies passes; the
flow run ends Failed otherwise (an INCONCLUSIVE audit too, unless `policy.inconclusive` is "pass").
Prefect automations can alert on it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from mnist_etc.export_source import champion_uri, lineage_of, resolve_source
from mnist_etc.model_store import load_model
from mnist_etc.audit.config import AuditConfig
from mnist_etc.audit.record import audit_summary, epsilon_of
from mnist_etc.audit.run import audit_dir_name, served_version_of
from mnist_etc.triton.repository import DEFAULT_MODEL_NAME, DEFAULT_REPOSITORY, validate_model_name
from tasks.audit import attack_served_task, canary_audit_task, ledger_task, report_task


class AuditFailed(RuntimeError):
    """The audit did not pass (FAILED, or INCONCLUSIVE under `inconclusive: fail`): the flow run ends Failed.
    The message starts with the audit's verdict."""


@flow(name="privacy-audit", log_prints=True,
      description="Attack the served champion (public-prior hill climbing through Triton, membership inference), "
                  "bound epsilon from below with a one-run canary audit, compare with the last audit; fail on "
                  "epsilon, excess leakage, membership, an accounting bug or growth.")
def privacy_audit(champion: str | None = None, mlflow_tracking_uri: str | None = None,
                  served_model: str = DEFAULT_MODEL_NAME, repository: str = str(DEFAULT_REPOSITORY),
                  triton_url: str | None = None, policy: AuditConfig = AuditConfig(), show_training_data: bool = False,
                  audits_dir: str = "artifacts/audits") -> dict[str, Any]:
    logger = get_run_logger()
    cfg = policy   # validated by Prefect (or the CLI) against the model before the run started
    validate_model_name(served_model)
    uri = champion_uri(champion)
    source = resolve_source(mlflow_model=uri, tracking_uri=mlflow_tracking_uri)
    stored = load_model(source.model_dir)
    version = served_version_of(Path(repository), served_model, stored)
    logger.info("champion %s -> %s, served as %s v%d", uri, source.model_dir, served_model, version)
    if triton_url:
        rec = attack_served_task(stored, triton_url, served_model, version, cfg)
    else:
        from mnist_etc.triton.server import ServerConfig, TritonServer

        with TritonServer(ServerConfig(Path(repository), model_control_mode="explicit",
                                       load_models=(served_model,))) as server:
            # No retry: a server of our own that died does not come back, and the retry would only report
            # that it cannot connect instead of why the server stopped.
            rec = attack_served_task.with_options(retries=0)(stored, server.grpc_url, served_model, version, cfg)
            rec["served"]["url"] = f"embedded Triton ({server.grpc_url}, stopped after the audit)"
    rec["champion"] = uri
    rec["show_training_data"] = show_training_data   # the grid shows members only when asked, titled so
    if cfg.wants_canary_audit(epsilon_of(rec)):
        rec["canary_audit"] = canary_audit_task(stored, cfg)
    rec = report_task(rec, lineage_of(uri), cfg, audits_dir, audit_dir_name(), mlflow_tracking_uri)
    ledger = ledger_task(rec, stored, uri, source.mlflow_run_id, source.tracking_uri)
    v = rec["verdict"]
    summary = audit_summary(rec)
    summary["privacy_ledger"] = ledger
    for t in v["tests"]:
        print(f"  {t['verdict']:<12}  {t['name']}: {t['explanation']} (bound {t['bound']})")
    for t in v["not_applicable"]:
        print(f"  {'n/a':<12}  {t['name']}: {t['explanation']}")
    counted = "" if v["verdict"] != "INCONCLUSIVE" else f" (counted as {'passed' if v['passed'] else 'failed'}: " \
                                                         f"--inconclusive {v['inconclusive_policy']})"
    print(f"privacy audit of {uri}: {v['verdict']}{counted}; report {rec['report_dir']}/report.md")
    if not v["passed"]:
        raise AuditFailed(f"{v['verdict']}: " + "; ".join(v["reasons"]))
    return summary


if __name__ == "__main__":
    import sys

    from mnist_etc_cli.main import main

    sys.exit(main(["audit", *sys.argv[1:]]))
