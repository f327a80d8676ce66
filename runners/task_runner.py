"""The TrialRunner of a sweep flow run's own task runner: one `trial` task run (`tasks.trials.run_trial_task`) per
spec, on Prefect's thread pool (default: trials share one TensorFlow and one copy of the data) or process pool
(each worker process imports TensorFlow once; trials are isolated from each other's crashes)."""
from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from mnist_etc.errors import UserError
from mnist_etc.sweep.trial import TrialOutcome, TrialSpec
from tasks.trials import run_trial_task

TASK_RUNNERS = ("threads", "processes")


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

    needs_tracking_run = False   # the task runs in this flow run's processes: files stay on this machine

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
