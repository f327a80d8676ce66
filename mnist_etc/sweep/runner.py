"""How trials run: the small interface between the orchestrator and whatever executes trials.

The orchestrator keeps `parallelism` trials in flight and refills a slot as soon as any trial finishes (it
waits on the futures with FIRST_COMPLETED), so one slow trial never idles the other slots. A runner:

- `submit(spec)` starts one trial and returns a `concurrent.futures.Future`: its result is the
  `TrialOutcome`, its exception what the trial raised (the trial is told FAIL). A `TrialLost` means the
  trial's worker went away: it is failed as stale and retried. A `UserError` stops the whole sweep with its
  sentence once the trials in flight are in (a misconfigured runner, not a bad trial).
- `close()` is called once when the sweep ends or is interrupted; it cancels what has not started.

A runner never touches the study storage: the orchestrator tells Optuna. Implementations:

- `LocalRunner` (here): a thread pool in this process, no Prefect (the library's own default);
- `runners.task_runner.PrefectTrialRunner`: one Prefect task per trial on a thread or process pool task runner;
- `runners.deployment.DeploymentTrialRunner`: one flow run per trial on work pool `mnist-etc-trials`, the
  trial's files carried back through the MLflow server (no shared disk); `TrialLost` is what it returns for a
  trial whose worker was killed. Its `needs_tracking_run` is True.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from mnist_etc.sweep.trial import TrialOutcome, TrialSpec, run_trial

TrialResult = TrialOutcome | BaseException


class TrialLost(Exception):
    """The trial did not fail: whatever ran it went away (a killed worker, a crashed flow run). The
    orchestrator fails it as stale and queues a retry with the same parameters, so it is never counted."""


class TrialRunner(Protocol):
    # True when the trial's files come back through its MLflow run (a worker on another machine): the orchestrator
    # then gives every trial an MLflow run, retrying while the server restarts, before submitting it.
    needs_tracking_run: bool

    def submit(self, spec: TrialSpec) -> "Future[TrialOutcome]":
        """Start one trial; do not block for its duration (except a one-slot runner, which may run it inline)."""
        ...

    def close(self) -> None:
        """No more trials: cancel what has not started."""
        ...


def completed(fn, *args) -> "Future[TrialOutcome]":
    """Run `fn(*args)` now, in this thread, and return its outcome or its exception as a finished future."""
    future: Future = Future()
    try:
        future.set_result(fn(*args))
    except Exception as exc:  # a failing trial is a result (told FAIL), not the sweep's end
        future.set_exception(exc)
    return future


class LocalRunner:
    """Threads in this process. TensorFlow releases the GIL in its kernels, so trials overlap; on a
    2-core machine each training already uses both cores, so expect a small gain at best. With one slot
    the trial runs inline in the calling thread, so Ctrl-C interrupts it at once."""

    needs_tracking_run = False   # trials write their files here

    def __init__(self, max_workers: int = 1):
        self.max_workers = max(1, int(max_workers))
        self._pool: ThreadPoolExecutor | None = None

    def run_one(self, spec: TrialSpec) -> TrialOutcome:
        return run_trial(spec)

    def submit(self, spec: TrialSpec) -> "Future[TrialOutcome]":
        if self.max_workers == 1:
            return completed(self.run_one, spec)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="trial")
        return self._pool.submit(self.run_one, spec)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
