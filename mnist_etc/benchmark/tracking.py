"""An MLflow run per benchmark: the resolved grid as parameters, the best figures as metrics, every point as a
step of per-point metrics, and the whole run directory (CSV, plots, summary, raw perf_analyzer reports) as
artifacts. Same default tracking store as the sweeps (`sqlite:///artifacts/mlflow.db`).

Browse: mlflow ui --backend-store-uri sqlite:///artifacts/mlflow.db --host 127.0.0.1
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

from mnist_etc.benchmark.results import PointResult
from mnist_etc.errors import UserError

EXPERIMENT = "mnist-etc-benchmarks"


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
                      summary: dict[str, float | None], results: Sequence[PointResult],
                      ceiling_ips: float | None) -> str:
    """Create the MLflow run and log everything; returns its run id."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    try:
        client = MlflowClient(tracking_uri)
        exp = client.get_experiment_by_name(EXPERIMENT)
        if exp is None:
            location = None
            if tracking_uri.startswith("sqlite:"):
                location = (Path(artifacts_root) / "mlflow-artifacts").resolve().as_uri()
            experiment_id = client.create_experiment(EXPERIMENT, artifact_location=location)
        else:
            if exp.lifecycle_stage == "deleted":
                client.restore_experiment(exp.experiment_id)
            experiment_id = exp.experiment_id
    except Exception as exc:  # bad URI, server down: the user's to fix
        raise UserError(f"could not use MLflow tracking URI {tracking_uri!r} "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}).") from None
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
        for r in results:   # one step per point: the curves are browsable in the MLflow UI
            if r.ok:
                metrics += [Metric("point.throughput", r.throughput, now, r.index),
                            Metric("point.p99_ms", r.p99_ms, now, r.index),
                            Metric("point.concurrency", float(r.point.concurrency), now, r.index)]
                eff = r.efficiency(ceiling_ips)
                if eff is not None:
                    metrics.append(Metric("point.serving_efficiency", eff, now, r.index))
        for i in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[i:i + 1000])
        client.log_artifacts(run_id, str(run_dir))
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    return run_id
