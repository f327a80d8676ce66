"""An MLflow run per benchmark: the resolved grid as parameters, the best figures as metrics, every point as a
step of per-point metrics, and the whole run directory (CSV, plots, summary, raw perf_analyzer reports) as
artifacts. Same default tracking store as the sweeps (`sqlite:///artifacts/mlflow.db`). The caller
(mnist_etc.benchmark.run.track) gives the figures as plain numbers.

Browse: mlflow ui --backend-store-uri sqlite:///artifacts/mlflow.db --host 127.0.0.1
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

from mnist_etc.tracking.layout import BENCHMARK_EXPERIMENT
from mnist_etc.tracking.store import open_experiment

PointMetrics = tuple[int, dict[str, float]]   # (point index, {name: value}): logged as `point.<name>` at that step


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = str(value)[:6000]


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def log_benchmark_run(tracking_uri: str, artifacts_root: Path, run: str, run_dir: Path, spec: dict[str, Any],
                      summary: dict[str, float | None], points: Sequence[PointMetrics]) -> str:
    """Create the MLflow run and log everything; returns its run id. `points`: one entry per measured point, in
    order, so that the curves are browsable in the MLflow UI."""
    from mlflow.entities import Metric, Param

    client, experiment_id = open_experiment(tracking_uri, BENCHMARK_EXPERIMENT, artifacts_root)
    mlrun = client.create_run(experiment_id, run_name=run, tags={"mnist_etc.kind": "benchmark",
                                                                 "mnist_etc.run_dir": str(run_dir)})
    run_id = mlrun.info.run_id
    try:
        params: dict[str, str] = {}
        _flatten("", spec, params)
        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), 100):
            client.log_batch(run_id, params=items[i:i + 100])
        now = int(time.time() * 1000)
        metrics = [Metric(k, f, now, 0) for k, v in summary.items() if (f := _finite(v)) is not None]
        for step, figures in points:
            metrics += [Metric(f"point.{name}", value, now, step) for name, value in figures.items()]
        for i in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[i:i + 1000])
        client.log_artifacts(run_id, str(run_dir))
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    return run_id
