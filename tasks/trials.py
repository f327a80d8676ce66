"""The Prefect task per Optuna trial (`runners.task_runner.PrefectTrialRunner` submits them to a task runner).

The task is a thin wrapper around `mnist_etc.sweep.trial.run_trial`: it trains, attacks and publishes
`trial-<n>/`, and returns the outcome; the flow's orchestrator tells Optuna. No retries here: a trial
that raises is told FAIL (training failures are deterministic), and trials killed with their worker
are failed and retried by the orchestrator on its next start.
"""
from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mnist_etc.sweep.trial import TrialOutcome, TrialSpec, run_trial


# NO_CACHE: a re-run trial must really train (and its spec holds no secrets worth hashing anyway).
@task(name="trial", task_run_name="{spec.study}-trial-{spec.number}", cache_policy=NO_CACHE,
      persist_result=False, retries=0)
def run_trial_task(spec: TrialSpec) -> TrialOutcome:
    logger = get_run_logger()
    logger.info("trial #%d of study %s: %s", spec.number, spec.study, spec.params)
    outcome = run_trial(spec)
    logger.info("trial #%d: values %s, epsilon %s, %.1f s", spec.number,
                [round(v, 4) for v in outcome.values], outcome.user_attrs.get("epsilon"),
                outcome.user_attrs.get("trial_seconds", 0.0))
    return outcome
