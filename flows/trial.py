"""Prefect flow `trial`: one Optuna trial on whichever worker of work pool `mnist-etc-trials` picks it up.

Started by the sweep's `--runner deployment` (runners/deployment.py) as deployment `trial/default`, never by
hand. The worker shares no disk with the sweep: the trial runs in $MNIST_ETC_WORKER_DIR (else a temp dir), its
directory is uploaded to the trial's MLflow run (artifact path `trial/`, retried for ~2 minutes while the MLflow
server restarts) and the local copy deleted; the sweep downloads it back. A worker whose mnist_etc code differs
from the sweep's refuses the trial with one sentence (a Failed state named `Refused`), which stops the sweep.
"""
from __future__ import annotations

import os
import socket
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Failed, State

from mnist_etc.sweep import transport
from mnist_etc.tracking.layout import TRIAL_ARTIFACT_PATH
from runners.deployment import REFUSED_STATE, SUPERSEDED_STATE, given_up_by_sweep


def _run_name() -> str:
    spec = flow_run.parameters.get("spec") or {}
    return f"{spec.get('study', 'study')}-trial-{spec.get('number', '?')}"


@flow(name="trial", flow_run_name=_run_name, log_prints=True, persist_result=False, retries=0,
      description="One sweep trial on a worker: train, attack, upload its files to the trial's MLflow run.")
def trial(spec: dict, code_version: str) -> dict[str, Any] | State:
    where = f"{socket.gethostname()}:{os.getpid()}"
    refusal = transport.code_version_refusal(code_version, transport.code_version(), where)
    if refusal:
        return Failed(name=REFUSED_STATE, message=refusal)
    logger = get_run_logger()
    trial_spec = transport.trial_spec_from_dict(spec)
    work_dir = transport.worker_dir() / "trial-runs" / str(flow_run.id or "local")
    logger.info("trial #%d of study %s in %s: %s", trial_spec.number, trial_spec.study, work_dir, trial_spec.params)
    outcome = transport.run_trial_on_worker(trial_spec, work_dir, log=logger.warning)
    logger.info("trial #%d: values %s, %.1f s; files uploaded to MLflow run %s (artifact path %s/)",
                outcome.number, [round(v, 4) for v in outcome.values], outcome.user_attrs.get("trial_seconds", 0.0),
                trial_spec.mlflow_run_id, TRIAL_ARTIFACT_PATH)
    given_up = given_up_by_sweep(flow_run.id, log=logger.warning)
    if given_up:
        # The sweep lost sight of this run (no heartbeat: its worker was cut off), set it CRASHED, told Optuna FAIL
        # and asked the trial again: ending COMPLETED now would show a result that no one counted.
        return Failed(name=SUPERSEDED_STATE, message=given_up)
    return transport.outcome_summary(outcome)
