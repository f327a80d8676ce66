"""Prefect flow `benchmark`: Triton configurations measured with perf_analyzer, best under a p99 budget.

    python -m flows.benchmark --grid search_spaces/benchmark_smoke.yaml     # = mnist-etc benchmark ...
    from flows.benchmark import benchmark
    benchmark(grid="search_spaces/benchmark_smoke.yaml", overrides=BenchmarkOverrides(concurrency="4"))

Parameters are typed models: `grid` is a grid file or the grid itself (`BenchmarkSpec`), `overrides` (`BenchmarkOverrides`: the settings `mnist-etc benchmark` takes as
options; unset = the grid file's value, else the default) and `options` (`RunOptions`: where the run goes),
so Prefect validates `prefect deployment run --params` and shows a form for them. The run itself is library
code, `mnist_etc.benchmark.run_benchmark`; this flow makes each point and the in-process ceiling a task run,
and publishes the results as a Prefect table artifact and the summary as a markdown artifact; while it
measures, a progress artifact (`benchmark-<run>-progress`) counts the measurements made. Without
PREFECT_API_URL, Prefect starts a temporary local server for the run (10-15 s).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from mnist_etc.artifact_keys import artifact_key
from mnist_etc.benchmark.grid import BenchmarkOverrides, BenchmarkSpec, resolve_spec
from mnist_etc.benchmark.run import RunOptions, default_run_name, run_benchmark
from tasks.benchmark import prefect_ceiling_runner, prefect_point_runner
from tasks.progress import RunProgress

# Columns of the table artifact (results.csv has them all).
TABLE_COLUMNS = ("point", "config_id", "baseline", "instance_count", "max_batch_size", "max_queue_delay_microseconds",
                 "preferred_batch_size", "concurrency", "phase", "repeat", "status", "settled", "throughput", "p50_ms",
                 "p99_ms", "throughput_spread", "server_queue_ms", "server_compute_infer_ms", "serving_efficiency",
                 "within_budget", "reason")


def _run_name() -> str:
    params = flow_run.parameters
    grid, options = params.get("grid"), params.get("options")
    run = options.get("run") if isinstance(options, dict) else getattr(options, "run", None)
    if isinstance(grid, (BenchmarkSpec, dict)):
        return "benchmark-" + (run or (grid.name if isinstance(grid, BenchmarkSpec) else grid.get("name", "grid")))
    return "benchmark-" + (run or (Path(grid).stem.removeprefix("benchmark_") if grid else "defaults"))


@flow(name="benchmark", flow_run_name=_run_name, log_prints=True,
      description="Sweep Triton batching/instance settings with perf_analyzer; best config under a p99 budget.")
def benchmark(grid: str | BenchmarkSpec | None = None,
              overrides: BenchmarkOverrides = BenchmarkOverrides(),  # type: ignore
              options: RunOptions = RunOptions()) -> dict[str, Any]:
    # A file is read here; a BenchmarkSpec (from the CLI or the pipeline) arrives validated and expanded.
    spec = grid.with_overrides(overrides) if isinstance(grid, BenchmarkSpec) else resolve_spec(grid, overrides)
    logger = get_run_logger()
    # Named here, so that the progress artifact is keyed by the run before its first measurement.
    options = options.model_copy(update={"run": options.run or default_run_name(spec, dt.datetime.now())})
    progress = RunProgress(artifact_key("benchmark", options.run, "progress"), _progress_meaning(options.run))
    outcome = run_benchmark(spec, options, log=logger.info, measure_point=prefect_point_runner,
                            measure_ceiling=prefect_ceiling_runner, on_progress=progress.update)
    create_table_artifact(table=[{k: row[k] for k in TABLE_COLUMNS} for row in outcome.rows],
                          key=artifact_key("benchmark", outcome.run),
                          description=f"Benchmark {outcome.run}: every point (images/s, latencies in ms); "
                                      f"full table in {outcome.files['results']}.")
    create_markdown_artifact(markdown=outcome.markdown, key=artifact_key("benchmark", outcome.run) + "-summary",
                             description=f"Benchmark {outcome.run}: best configuration under the budget.")
    progress.finish(f"done: {outcome.summary['points_ok']} measurement(s) ok, {outcome.summary['points_failed']} "
                    f"failed; results in {outcome.run_dir}.")
    return outcome.to_dict()


def _progress_meaning(run: str) -> str:
    return (f"Benchmark {run}: percent of the planned measurements made. The plan is the search strategy's own "
            f"count: every grid point for brute, at most that for prune_over_budget, and for adaptive the "
            f"measurements made plus its running estimate of those to come (the bar pauses when the estimate "
            f"grows; it never goes back). 100 once the results are published.")


if __name__ == "__main__":
    import sys

    from mnist_etc_cli.main import main

    sys.exit(main(["benchmark", *sys.argv[1:]]))
