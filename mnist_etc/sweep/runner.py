"""How trials run: the small interface between the orchestrator and whatever executes trials.

A runner takes a batch of `TrialSpec`s and returns, in the same order, a `TrialOutcome` or the exception
each trial raised. It must not raise for a failing trial, and it never touches the study storage: the
orchestrator tells Optuna. Implementations:

- `LocalRunner` (here): a thread pool in this process, no Prefect (the library's own default);
- `tasks.trials.PrefectTrialRunner`: one Prefect task per trial on a thread or process pool task runner;
- later: `run_deployment` onto a work pool, or a Dask cluster; each needs the trial directories on a
  file system the orchestrator can read (shared disk) and a study storage only the orchestrator writes.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, Sequence

from mnist_etc.sweep.trial import TrialOutcome, TrialSpec, run_trial

TrialResult = TrialOutcome | BaseException


class TrialRunner(Protocol):
    def run_batch(self, specs: Sequence[TrialSpec]) -> list[TrialResult]:
        """Run the trials (concurrently if the runner can) and return one result per spec, in order."""
        ...


class LocalRunner:
    """Threads in this process. TensorFlow releases the GIL in its kernels, so trials overlap; on a
    2-core machine each training already uses both cores, so expect a small gain at best."""

    def __init__(self, max_workers: int = 1):
        self.max_workers = max(1, int(max_workers))

    def run_batch(self, specs: Sequence[TrialSpec]) -> list[TrialResult]:
        def guarded(spec: TrialSpec) -> TrialResult:
            try:
                return run_trial(spec)
            except Exception as exc:  # a failing trial is a result (told FAIL), not the sweep's end
                return exc

        if self.max_workers == 1 or len(specs) <= 1:
            return [guarded(s) for s in specs]
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(specs)),
                                thread_name_prefix="trial") as pool:
            return list(pool.map(guarded, specs))
