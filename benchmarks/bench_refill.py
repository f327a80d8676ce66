"""Refill vs batch: idle slot-seconds of a sweep whose trials have uneven lengths.

    .venv/bin/python benchmarks/bench_refill.py               # ~4 min on 2 quiet cores
    .venv/bin/python benchmarks/bench_refill.py --trials 8 --parallelism 2

The same sweep twice, same sampler seed (so the same settings in the same order): search_spaces/smoke.yaml
with `ae_epochs` drawn from {1, 8} (uneven trial lengths), on the library's thread runner.
- refill: the orchestrator as it is (a slot is refilled as soon as its trial finishes);
- batch: the previous release's behaviour, rebuilt as a runner that holds every finished trial back until
  the slowest trial of its batch is done, so the orchestrator asks the next batch only then.
Idle slot-seconds = parallelism x (last trial end - first trial start) - the sum of trial durations: the time
a slot (a worker) had no trial to run. Printed as a Markdown table; JSON in <artifacts>/bench_refill.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import yaml  # noqa: E402

from mnist_etc.atomic import write_json_atomic  # noqa: E402
from mnist_etc.sweep import LocalRunner, SweepOptions, run_sweep  # noqa: E402
from mnist_etc.sweep.space import load_search_space  # noqa: E402


class TimedRunner(LocalRunner):
    """The library's thread runner, recording when each trial started and ended."""

    def __init__(self, max_workers: int):
        super().__init__(max_workers)
        self.spans: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    def run_one(self, spec):
        t0 = time.perf_counter()
        try:
            return super().run_one(spec)
        finally:
            with self._lock:
                self.spans.append((t0, time.perf_counter()))


class BatchRunner(TimedRunner):
    """Batch semantics on the refill orchestrator: a finished trial's result is released only when every
    trial submitted with it has finished, so no slot is refilled before the batch's slowest trial ends."""

    def __init__(self, max_workers: int):
        super().__init__(max_workers)
        self.group: list[tuple[Future, Future]] = []

    def submit(self, spec):
        inner, outer = super().submit(spec), Future()
        with self._lock:
            group = self.group
            group.append((inner, outer))
        inner.add_done_callback(lambda _: self._release(group))
        return outer

    def _release(self, group: list[tuple[Future, Future]]) -> None:
        with self._lock:
            if not all(inner.done() for inner, _ in group) or all(outer.done() for _, outer in group):
                return
            if group is self.group:
                self.group = []
        for inner, outer in group:
            if inner.exception() is not None:
                outer.set_exception(inner.exception())
            else:
                outer.set_result(inner.result())


def uneven_space(directory: Path, trials: int, parallelism: int) -> Path:
    doc = yaml.safe_load((ROOT / "search_spaces" / "smoke.yaml").read_text())
    doc.update(trials=trials, parallelism=parallelism, sampler={"name": "random", "seed": 3})
    doc["params"]["ae_epochs"] = {"type": "categorical", "choices": [1, 8]}
    path = directory / "uneven.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def measure(mode: str, space_path: Path, artifacts: Path) -> dict:
    space = load_search_space(space_path).with_overrides(study=f"refill-{mode}-{int(time.time())}")
    runner = (BatchRunner if mode == "batch" else TimedRunner)(space.parallelism)
    t0 = time.perf_counter()
    summary = run_sweep(space, SweepOptions.build(artifacts=artifacts), runner, log=lambda s: None)
    wall = time.perf_counter() - t0
    first, last = min(s for s, _ in runner.spans), max(e for _, e in runner.spans)
    busy = sum(e - s for s, e in runner.spans)
    idle = space.parallelism * (last - first) - busy
    return {"mode": mode, "wall_seconds": round(wall, 1), "trials_seconds": round(last - first, 1),
            "busy_slot_seconds": round(busy, 1), "idle_slot_seconds": round(idle, 1),
            "idle_share": round(idle / (space.parallelism * (last - first)), 3),
            "complete": summary.counts.get("COMPLETE", 0),
            "durations": sorted(round(e - s, 1) for s, e in runner.spans)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--parallelism", type=int, default=2)
    ap.add_argument("--artifacts", type=Path, default=ROOT / "artifacts" / "bench")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        space_path = uneven_space(Path(tmp), args.trials, args.parallelism)
        from mnist_etc.sweep.trial import cached_split

        cached_split(load_search_space(space_path).data)   # data loaded before anything is timed
        rows = [measure(mode, space_path, args.artifacts) for mode in ("batch", "refill")]
    print(f"\n{args.trials} trials, parallelism {args.parallelism}, ae_epochs from {{1, 8}} (uneven)\n")
    print("| schedule | sweep wall s | trials span s | busy slot-s | idle slot-s | idle share | trial s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['mode']} | {r['wall_seconds']} | {r['trials_seconds']} | {r['busy_slot_seconds']} | "
              f"{r['idle_slot_seconds']} | {r['idle_share']:.0%} | {', '.join(map(str, r['durations']))} |")
    write_json_atomic(args.artifacts / "bench_refill.json", {"trials": args.trials, "parallelism": args.parallelism,
                                                             "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
