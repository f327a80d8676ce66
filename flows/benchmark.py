"""Prefect flow `benchmark`: Triton configurations measured with perf_analyzer, best under a p99 budget.

    python -m flows.benchmark --grid search_spaces/benchmark_smoke.yaml     # = mnist-etc benchmark ...
    from flows.benchmark import benchmark; benchmark(grid="search_spaces/benchmark_smoke.yaml", concurrency="4")

Parameters are those of `mnist-etc benchmark` (None = not given: the grid file's value, else the default).
The run itself is library code, `mnist_etc.benchmark.run_benchmark`; this flow makes each point and the
in-process ceiling a task run, and publishes the results as a Prefect table artifact and the summary as a
markdown artifact. Without PREFECT_API_URL, Prefect starts a temporary local server for the run (10-15 s).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from mnist_etc.benchmark import RunOptions, resolve_spec, run_benchmark
from tasks.benchmark import prefect_ceiling_runner, prefect_point_runner

# Columns of the table artifact (results.csv has them all).
TABLE_COLUMNS = ("point", "config_id", "baseline", "instance_count", "max_batch_size", "max_queue_delay_microseconds",
                 "preferred_batch_size", "concurrency", "status", "throughput", "p50_ms", "p99_ms", "server_queue_ms",
                 "server_compute_infer_ms", "serving_efficiency", "within_budget", "reason")


def artifact_key(run: str) -> str:
    """Prefect artifact keys take lowercase letters, digits and dashes only."""
    return "benchmark-" + re.sub(r"[^a-z0-9-]", "-", run.lower())


def _run_name() -> str:
    params = flow_run.parameters
    grid = params.get("grid")
    return "benchmark-" + (params.get("run") or (Path(grid).stem.removeprefix("benchmark_") if grid else "defaults"))


@flow(name="benchmark", flow_run_name=_run_name, log_prints=True,
      description="Sweep Triton batching/instance settings with perf_analyzer; best config under a p99 budget.")
def benchmark(grid: str | None = None, url: str | None = None, run: str | None = None,
              model: str | None = None, version: int | None = None, repository: str | None = None,
              instance_count: str | list[int] | None = None, max_batch_size: str | list[int] | None = None,
              max_queue_delay_microseconds: str | list[int] | None = None,
              preferred_batch_size: list[list[int]] | None = None, intra_op_threads: str | list[int] | None = None,
              concurrency: str | list[int] | None = None, request_batch_size: int | None = None,
              protocol: Literal["grpc", "http"] | None = None, interval_ms: int | None = None,
              stability_percentage: float | None = None, max_trials: int | None = None,
              percentile: int | None = None, timeout_s: float | None = None, p99_budget_ms: float | None = None,
              objective: Literal["throughput", "throughput_per_instance", "efficiency"] | None = None,
              baseline: Literal["current", "defaults"] | None = None,
              strategy: Literal["brute", "prune_over_budget"] | None = None, artifacts: str = "artifacts",
              mlflow_uri: str | None = None, mlflow: bool = True, write_best: bool = True) -> dict[str, Any]:
    spec = resolve_spec(grid, model=model, version=version, repository=repository, instance_count=instance_count,
                        max_batch_size=max_batch_size, max_queue_delay_microseconds=max_queue_delay_microseconds,
                        preferred_batch_size=preferred_batch_size, intra_op_threads=intra_op_threads,
                        concurrency=concurrency, request_batch_size=request_batch_size, protocol=protocol,
                        interval_ms=interval_ms, stability_percentage=stability_percentage, max_trials=max_trials,
                        percentile=percentile, timeout_s=timeout_s, p99_budget_ms=p99_budget_ms,
                        objective=objective, baseline=baseline, strategy=strategy)
    options = RunOptions(url=url, run=run, artifacts=Path(artifacts), mlflow_uri=mlflow_uri, mlflow=mlflow,
                         write_best=write_best)
    logger = get_run_logger()
    outcome = run_benchmark(spec, options, log=logger.info, measure_point=prefect_point_runner,
                            measure_ceiling=prefect_ceiling_runner)
    create_table_artifact(table=[{k: row[k] for k in TABLE_COLUMNS} for row in outcome.rows],
                          key=artifact_key(outcome.run),
                          description=f"Benchmark {outcome.run}: every point (images/s, latencies in ms); "
                                      f"full table in {outcome.files['results']}.")
    create_markdown_artifact(markdown=outcome.markdown, key=artifact_key(outcome.run) + "-summary",
                             description=f"Benchmark {outcome.run}: best configuration under the budget.")
    return outcome.to_dict()


if __name__ == "__main__":
    import sys

    from mnist_etc_cli.main import main

    sys.exit(main(["benchmark", *sys.argv[1:]]))
