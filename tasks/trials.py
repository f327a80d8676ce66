"""Prefect task per Optuna trial, and the TrialRunner that submits them one by one to a task runner.

The task is a thin wrapper around `mnist_etc.sweep.trial.run_trial`: it trains, attacks and publishes
`trial-<n>/`, and returns the outcome; the flow's orchestrator tells Optuna. No retries here: a trial
that raises is told FAIL (training failures are deterministic), and trials killed with their worker
are failed and retried by the orchestrator on its next start.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from mnist_etc.errors import UserError
from mnist_etc.sweep.trial import TrialOutcome, TrialSpec, run_trial

TASK_RUNNERS = ("threads", "processes")


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


def make_task_runner(kind: str, max_workers: int) -> TaskRunner[Any]:
    """`threads` (default: trials share one TensorFlow and one copy of the data) or `processes` (each
    worker process imports TensorFlow once; isolates trials from each other's crashes)."""
    if kind == "threads":
        return ThreadPoolTaskRunner(max_workers=max_workers)
    if kind == "processes":
        return ProcessPoolTaskRunner(max_workers=max_workers)
    raise UserError(f"task runner {kind!r} is not known; accepted: {', '.join(TASK_RUNNERS)}.")


class PrefectTrialRunner:
    """The TrialRunner of the `sweep` flow: one `trial` task run per spec on an entered task runner. Each
    Prefect future is resolved into a `concurrent.futures.Future` by a small thread, so the orchestrator can
    wait for the first trial to finish, whichever runner ran it."""

    def __init__(self, task_runner: TaskRunner[Any]):
        self.task_runner = task_runner

    def submit(self, spec: TrialSpec) -> "Future[TrialOutcome]":
        prefect_future = self.task_runner.submit(run_trial_task, parameters={"spec": spec})
        future: Future = Future()

        def resolve() -> None:
            try:
                future.set_result(prefect_future.result())
            except Exception as exc:  # the task failed: its exception is the trial's result
                future.set_exception(exc)

        threading.Thread(target=resolve, name=f"trial-{spec.number}-result", daemon=True).start()
        return future

    def close(self) -> None:
        """Nothing to cancel here: the flow's task runner context ends the trials' lifetime."""
