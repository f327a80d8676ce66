"""How a long run tells its driver how far it has got, without knowing who that is.

    run_benchmark(spec, options, on_progress=lambda done, total, note: print(f"{done}/{total}: {note}"))

The library calls `on_progress(done, total, note)` once when the plan is known and again each time a unit of
work finishes: `done` units so far (benchmark: measurements made; sweep: trials finished, COMPLETE or FAIL,
those of an earlier run of the study included), `total` the units planned as known now (a strategy may
revise it as results come in), or None when it must not be told (a private random search's secret trial
count), and `note` one line on what just finished (the line the log shows). The Prefect flows turn the calls
into a progress artifact (tasks/progress.py); the CLI's own progress lines come from `log`, as before.
"""
from __future__ import annotations

from typing import Callable, Optional

ProgressHook = Callable[[int, Optional[int], str], None]


def no_progress(done: int, total: int | None, note: str) -> None:
    """The hook of a caller that does not watch."""
