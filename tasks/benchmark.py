"""Prefect tasks of the `benchmark` flow: one task run per measured point, one for the in-process ceiling.

Thin wrappers around `mnist_etc.benchmark`: the session (server, reloads, perf_analyzer) stays library
code and is passed in; the tasks add a task run per point in the Prefect UI and its log lines. No retries:
a failed point is already a recorded row, and re-measuring would hide that it failed.
"""
from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mnist_etc.benchmark.ceiling import Ceiling, measure_in_process
from mnist_etc.benchmark.results import PointResult
from mnist_etc.benchmark.session import BenchmarkSession
from mnist_etc.benchmark.strategies import Point


# NO_CACHE: the session holds a live server; a point must be measured every time it is asked for.
@task(name="benchmark-point", task_run_name="point-{index}-c{point.concurrency}", cache_policy=NO_CACHE,
      persist_result=False, retries=0)
def measure_point_task(session: BenchmarkSession, point: Point, index: int, raw_dir: Path) -> PointResult:
    result = session.measure(point, index, raw_dir)
    logger = get_run_logger()
    if result.ok:
        logger.info("point %d (config %d, concurrency %d): %.0f images/s, p99 %.2f ms", index, point.config_id,
                    point.concurrency, result.throughput, result.p99_ms)
    else:
        logger.warning("point %d failed (%s): %s", index, result.failure, result.reason)
    return result


@task(name="in-process-ceiling", cache_policy=NO_CACHE, persist_result=False, retries=0)
def measure_ceiling_task(onnx: Path, batch_size: int, seconds: float) -> Ceiling:
    return measure_in_process(onnx, batch_size, seconds)


def prefect_point_runner(session: BenchmarkSession, point: Point, index: int, raw_dir: Path) -> PointResult:
    return measure_point_task(session, point, index, raw_dir)


def prefect_ceiling_runner(onnx: Path, batch_size: int, seconds: float) -> Ceiling:
    return measure_ceiling_task(onnx, batch_size, seconds)
