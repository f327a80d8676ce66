"""A flow run's progress as a Prefect progress artifact (0-100), fed by the library's progress hook.

    progress = RunProgress(artifact_key("sweep", study, "progress"), "Sweep smoke: percent of the trials finished.")
    summary = run_sweep(space, options, runner, on_progress=progress.update)   # mnist_etc.progress.ProgressHook
    ...                                                                          # publish the results
    progress.finish("4 trials finished; reports written.")

The artifact is created at 0 and updated in place: one API call per call of the hook, that is once when the
plan is known and once per finished point or trial (seconds apart at the least), then 100 at `finish`. The
bar never goes back: when a strategy's estimate of the work grows, it pauses instead. Its description says
what the percent counts, followed by the latest line the run logged.

A failed call (the API unreachable, the artifact deleted) is a warning, never the flow's failure: the
progress is a view of the run, not its work.
"""
from __future__ import annotations

from typing import Callable
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact


class RunProgress:
    """The progress artifact `key` of the current flow run; `meaning` says what its percent counts."""

    def __init__(self, key: str, meaning: str, warn: Callable[[str], None] | None = None):
        self.key, self.meaning = key, meaning
        self.warn = warn or get_run_logger().warning
        self.percent = 0.0
        self.failures = 0
        self.artifact_id: UUID | None = None
        try:
            # _sync: async_dispatch otherwise guesses sync or async from the calling context.
            self.artifact_id = create_progress_artifact(0.0, key=key, description=meaning, _sync=True)
        except Exception as exc:
            self._failed("could not be created", exc)

    def update(self, done: int, total: int | None, note: str) -> None:
        """`done` of `total` units finished (a ProgressHook); a total of None is not told, the bar stays."""
        if total is not None:
            share = 1.0 if total <= 0 else min(1.0, done / total)
            self.percent = max(self.percent, round(100.0 * share, 1))
        self._send(note)

    def finish(self, note: str) -> None:
        """The run has published its results: 100."""
        self.percent = 100.0
        self._send(note)
        if self.failures > 1:
            self.warn(f"{self.failures} updates of progress artifact {self.key!r} failed; the run itself is unaffected")

    def _send(self, note: str) -> None:
        if self.artifact_id is None:
            return
        try:
            update_progress_artifact(self.artifact_id, self.percent, description=f"{self.meaning} Latest: {note}",
                                     _sync=True)
        except Exception as exc:
            self._failed("could not be updated", exc)

    def _failed(self, what: str, exc: Exception) -> None:
        self.failures += 1
        if self.failures == 1:   # one warning, not one per point: the cause is the same
            reason = str(exc).splitlines()[0][:200] if str(exc) else ""
            self.warn(f"progress artifact {self.key!r} {what} ({type(exc).__name__}: {reason}); the run goes on "
                      f"without it")
