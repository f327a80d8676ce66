"""One benchmark run, end to end: validate, measure the in-process ceiling, sweep the points on a live Triton,
analyse, write the reports, put the best configuration into the repository, log to MLflow.

    >>> spec = load_grid("search_spaces/benchmark_smoke.yaml")
    >>> outcome = run_benchmark(spec, RunOptions())           # embedded server; RunOptions(url=...) for another
    >>> outcome.run_dir, outcome.analysis.best

Outputs, in `artifacts/benchmarks/<run>/` (published whole when the run completes, nothing on failure):
`results.csv`, `throughput_vs_p99.png`, `plots/config-<id>.png`, `heatmap_instances_x_delay.png`,
`summary.md`, `best.json`, `spec.json`, `raw/point-<n>.{csv,log}`. The hooks `measure_point` and
`measure_ceiling` let a caller wrap each measurement (the Prefect flow makes them tasks); `on_progress`
(mnist_etc.progress) hears of each measurement made, out of the strategy's planned count.

Two steps: `measure` (the server, the ceiling and the strategy's points) and `publish` (analysis, files, the
best configuration into the repository), then `track` (MLflow, reported rather than raised on failure).
"""
from __future__ import annotations

import datetime as dt
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable

from pydantic import AfterValidator, Field, field_validator

from mnist_etc.atomic import staged_dir, write_json_atomic, write_text_atomic
from mnist_etc.benchmark.adopt import candidate_name, write_candidate
from mnist_etc.benchmark.analysis import Analysis, analyse
from mnist_etc.benchmark.ceiling import Ceiling, find_onnx, measure_in_process
from mnist_etc.benchmark.grid import BenchmarkSpec, validate_run_name
from mnist_etc.benchmark.report import config_labels, heat_map, summary_markdown, throughput_plots, verdict_sentence
from mnist_etc.benchmark.results import FAILED, SKIPPED, PointResult, results_csv
from mnist_etc.benchmark.session import BenchmarkSession, ServerDown
from mnist_etc.benchmark.strategies import Point, describe_strategy, make_strategy, plan_configs
from mnist_etc.config import Settings
from mnist_etc.errors import UserError
from mnist_etc.progress import ProgressHook, no_progress
from mnist_etc.tracking.layout import default_tracking_uri
from mnist_etc.tracking.store import check_tracking_uri
from mnist_etc.triton.model_config import PYTHON
from mnist_etc.triton.repository import list_models, versions

PointRunner = Callable[[BenchmarkSession, Point, int, Path], PointResult]
CeilingRunner = Callable[[Path, int, float], Ceiling]
BENCHMARKS_DIR = "benchmarks"


class RunOptions(Settings):
    """Where a run goes and what it talks to (not what it measures: that is the BenchmarkSpec)."""

    url: Annotated[str, Field(pattern=r"^[^/]*:[0-9]+$")] | None = Field(None, description=(
        "HOST:PORT of a running Triton; default: start the embedded server"), json_schema_extra={"accepts": (
            "HOST:PORT without a scheme or path (e.g. 127.0.0.1:8001 for gRPC, 127.0.0.1:8000 for HTTP)")})
    run: Annotated[str, AfterValidator(validate_run_name)] | None = Field(None, description=(
        "run name; default <spec name>-<YYYYmmdd-HHMMSS>; a finished run of the same name is replaced"))
    artifacts: Path = Field(Path("artifacts"), strict=False, description="output root",
                            json_schema_extra={"accepts": "a directory path"})
    mlflow_uri: str | None = Field(None, description="MLflow tracking URI; default sqlite:///<artifacts>/mlflow.db")
    mlflow: bool = Field(True, description="log the run to MLflow")
    write_best: bool = Field(True, description="write configs/benchmark-<run>.pbtxt into the model repository")

    @field_validator("mlflow_uri")
    @classmethod
    def _tracking_uri_by_scheme(cls, value: str | None) -> str | None:
        return value if value is None else check_tracking_uri(value)

    def tracking_uri(self) -> str:
        return self.mlflow_uri or default_tracking_uri(self.artifacts)


@dataclass
class BenchmarkOutcome:
    run: str
    run_dir: Path
    results: list[PointResult]
    analysis: Analysis
    ceiling: Ceiling | None
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    markdown: str
    files: dict[str, str] = field(default_factory=dict)
    mlflow_run_id: str | None = None
    mlflow_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "run_dir": str(self.run_dir), "summary": self.summary, "files": self.files,
                "mlflow_run_id": self.mlflow_run_id, "mlflow_error": self.mlflow_error}


def preflight(spec: BenchmarkSpec, options: RunOptions) -> None:
    """Everything checkable before the server starts or any load is sent."""
    from mnist_etc.triton.runtime_env import perf_analyzer_binary, perf_analyzer_env

    perf_analyzer_binary()
    perf_analyzer_env()
    if options.url is None:
        repo = spec.repository
        if not repo.is_dir():
            raise UserError(f"model repository {str(repo)!r} does not exist; run 'mnist-etc export' first, pass "
                            f"--repository, or --url for a running server.")
        models = list_models(repo)
        if spec.model not in models:
            raise UserError(f"model {spec.model!r} is not in repository {str(repo)!r}; available: "
                            f"{', '.join(models) or 'none (run mnist-etc export)'}.")
        if models[spec.model] != PYTHON:
            python = [m for m, b in models.items() if b == PYTHON]
            raise UserError(f"model {spec.model!r} uses the onnxruntime backend, which the embedded (pip-shipped) "
                            f"server lacks; benchmark {' or '.join(map(repr, python)) or 'its python-backend twin'} "
                            f"instead, or pass --url of an official Triton container serving it.")
        if spec.version is not None and spec.version not in versions(repo, spec.model):
            raise UserError(f"model {spec.model!r} has no version {spec.version} in {str(repo)!r}; available: "
                            f"{', '.join(map(str, versions(repo, spec.model))) or 'none'}.")


def _progress_line(r: PointResult, total: int, label: str, ceiling_ips: float | None) -> str:
    phase = "" if r.point.phase == "measure" else f" [{r.point.phase}" + (
        f" {r.point.repeat + 1}]" if r.point.phase == "confirm" else "]")
    head = (f"[{r.index + 1}/{total}] {label} c={r.point.concurrency}{' (baseline)' if r.point.baseline else ''}"
            f"{phase}:")
    if r.ok:
        eff = r.efficiency(ceiling_ips)
        m = r.measurement
        unsettled = (f", unsettled after {m.windows} windows (spread {m.throughput_spread:.0%} / {m.p99_spread:.0%}: "
                     f"medians recorded)") if not m.settled else ""
        return (f"{head} {r.throughput:,.0f} images/s, p99 {r.p99_ms:.2f} ms"
                + (f", efficiency {eff:.2f}" if eff is not None else "") + unsettled
                + f" (reload {r.reload_seconds:.1f} s, measure {r.measure_seconds:.1f} s)")
    return f"{head} {r.status.upper()} ({r.failure}) {r.reason}"


def _default_point_runner(session: BenchmarkSession, point: Point, index: int, raw_dir: Path) -> PointResult:
    return session.measure(point, index, raw_dir)


def _default_ceiling(onnx: Path, batch_size: int, seconds: float) -> Ceiling:
    return measure_in_process(onnx, batch_size, seconds)


def default_run_name(spec: BenchmarkSpec, started: dt.datetime) -> str:
    """The run's name when RunOptions.run is not given: the spec's name and the start time."""
    return f"{spec.name}-{started.strftime('%Y%m%d-%H%M%S')}"


def run_benchmark(spec: BenchmarkSpec, options: RunOptions = RunOptions(), log: Callable[[str], None] = print,
                  measure_point: PointRunner | None = None, measure_ceiling: CeilingRunner | None = None,
                  on_progress: ProgressHook = no_progress) -> BenchmarkOutcome:
    """Measure every point of `spec`, then publish the run: its directory appears whole or not at all."""
    preflight(spec, options)
    started = dt.datetime.now()
    run = options.run or default_run_name(spec, started)
    run_dir = options.artifacts / BENCHMARKS_DIR / run
    with staged_dir(run_dir) as staging:
        measured = measure(spec, options, staging / "raw", log, measure_point, measure_ceiling, on_progress)
        outcome = publish(spec, options, run, started, measured, staging, run_dir)
    if options.mlflow:
        track(outcome, spec, options, log)
    return outcome


@dataclass
class Measured:
    """What the measuring loop produced; `publish` turns it into files, a candidate config and an MLflow run."""

    results: list[PointResult]
    labels: dict[int, str]
    ceiling: Ceiling | None
    backend: str
    restarts: int
    wall_seconds: float

    @property
    def ceiling_ips(self) -> float | None:
        return self.ceiling.images_per_second if self.ceiling else None


def measure(spec: BenchmarkSpec, options: RunOptions, raw_dir: Path, log: Callable[[str], None] = print,
            measure_point: PointRunner | None = None, measure_ceiling: CeilingRunner | None = None,
            on_progress: ProgressHook = no_progress) -> Measured:
    """The measuring loop: start (or reach) the server, measure the ceiling, then each point the strategy asks
    for; a failed point is a row, a dead server fails the points left. `on_progress` hears (measurements made,
    the strategy's planned count as it stands) once the plan is known and after each point."""
    measure_point = measure_point or _default_point_runner
    measure_ceiling = measure_ceiling or _default_ceiling
    t0 = time.perf_counter()
    raw_dir.mkdir(parents=True, exist_ok=True)
    with BenchmarkSession(spec, options.url, log_dir=options.artifacts / "triton" / "logs", log=log) as session:
        # The ceiling is measured once the server is up (so a server that cannot start fails first) and
        # before any load is sent, while Triton's model instances sit idle.
        onnx = find_onnx(spec.repository, spec.model, spec.version)
        ceiling = None
        if onnx is not None:
            ceiling = measure_ceiling(onnx, spec.request_batch_size, spec.ceiling_seconds)
            log(f"in-process ceiling (ONNX Runtime, batch {spec.request_batch_size}): "
                f"{ceiling.images_per_second:,.0f} images/s")
        else:
            log(f"no local model.onnx for {spec.model!r} in {spec.repository}: serving efficiency not computed")
        ceiling_ips = ceiling.images_per_second if ceiling else None
        plan = plan_configs(spec.configs(), spec.baseline_config(session.initial), spec.all_concurrencies())
        labels = config_labels({cid: cfg for cid, cfg, _, _ in plan})
        strategy = make_strategy(spec.strategy, plan, spec.p99_budget_ms, spec.objective, spec.measurement,
                                 spec.request_batch_size)
        planned = (f"{len(plan)} configuration(s), about {strategy.planned} measurement(s); strategy "
                   f"{describe_strategy(spec.strategy)}")
        log(planned)
        on_progress(0, strategy.planned, planned)
        results: list[PointResult] = []
        down: ServerDown | None = None
        for point in strategy.get_configs():
            index = len(results)
            if down is not None:
                r = PointResult(index, point, FAILED, "server_down", str(down))
            else:
                try:
                    r = measure_point(session, point, index, raw_dir)
                except ServerDown as exc:
                    down = exc
                    r = PointResult(index, point, FAILED, "server_down", str(exc))
            results.append(r)
            strategy.set_last_results([r])
            estimate = strategy.planned
            line = _progress_line(r, estimate, labels[point.config_id], ceiling_ips)
            log(line)
            on_progress(len(results), estimate, line)
        made = len(results)   # the strategy may stop short of its estimate: the measuring is over all the same
        on_progress(made, made, f"{made} measurement(s) made")
        for point, reason in strategy.skipped:
            results.append(PointResult(len(results), point, SKIPPED, "skipped", reason))
        backend, restarts = session.backend, session.restarts
    return Measured(results, labels, ceiling, backend, restarts, time.perf_counter() - t0)


def _summary(analysis: Analysis, measured: Measured, labels: dict[int, str]) -> dict[str, Any]:
    ok = [r for r in measured.results if r.ok]
    best, base, ceiling_ips = analysis.best, analysis.baseline_best, measured.ceiling_ips
    closest = analysis.closest
    return {
        "verdict": analysis.verdict,
        "verdict_text": verdict_sentence(analysis, labels, bold=False),
        "best_config": labels[best.point.config_id] if best else None,
        "best_throughput": best.throughput if best else None,
        "best_p99_ms": best.p99_ms if best else None,
        "best_concurrency": best.point.concurrency if best else None,
        "best_measurements": len(best.results) if best else None,
        "best_throughput_range": list(best.throughput_range) if best else None,
        "best_serving_efficiency": best.efficiency(ceiling_ips) if best else None,
        "closest_throughput": closest.throughput if closest else None,
        "closest_p99_ms": closest.p99_ms if closest else None,
        "baseline_throughput": base.throughput if base else None,
        "improvement": analysis.improvement,
        "improvement_clear": analysis.clear_gain(ceiling_ips),
        "top_two_apart": analysis.top_two_apart(ceiling_ips),
        "best_is_baseline": best is not None and best.point.baseline,
        "in_process_images_per_second": ceiling_ips,
        "points_ok": analysis.n_ok, "points_failed": analysis.n_failed, "points_skipped": analysis.n_skipped,
        "points_unsettled": analysis.n_unsettled,
        "server_restarts": measured.restarts, "wall_seconds": measured.wall_seconds,
        "seconds_per_point": (sum(r.measure_seconds for r in ok) / len(ok)) if ok else None,
        "seconds_per_point_with_reload": (sum(r.measure_seconds + r.reload_seconds for r in ok) / len(ok))
        if ok else None,
    }


def _adoption(spec: BenchmarkSpec, options: RunOptions, run: str, run_dir: Path,
              analysis: Analysis) -> dict[str, Any] | None:
    """Where the candidate config goes: only if the model is in the repository (with --url it may live elsewhere)."""
    if analysis.best is None:
        return None
    model_cfg = spec.repository / spec.model / "config.pbtxt"
    adoption: dict[str, Any] = {"run_dir": str(run_dir), "config_name": candidate_name(run),
                                "backup_name": f"configs/before-{run}.pbtxt"}
    if not options.write_best:
        adoption["note"] = "disabled for this run (--no-write-best)"
    elif not model_cfg.is_file():
        adoption["note"] = f"{model_cfg} does not exist here"
    else:
        adoption["written"] = str(model_cfg.parent / "configs" / f"{candidate_name(run)}.pbtxt")
    return adoption


def publish(spec: BenchmarkSpec, options: RunOptions, run: str, started: dt.datetime, measured: Measured,
            staging: Path, run_dir: Path) -> BenchmarkOutcome:
    """The publishing step: analysis, results.csv, plots, summary.md, spec.json and best.json into the staging
    directory of `run_dir`, then the best configuration into the model repository (last, so that a failure
    leaves no run directory claiming it was written)."""
    results, labels, ceiling_ips, wall = measured.results, measured.labels, measured.ceiling_ips, measured.wall_seconds
    analysis = analyse(results, spec.objective, spec.p99_budget_ms, ceiling_ips)
    rows = [r.to_row(spec.request_batch_size, spec.protocol, ceiling_ips, spec.p99_budget_ms) for r in results]
    write_text_atomic(staging / "results.csv", results_csv(rows))
    throughput_plots(staging, results, labels, analysis, run)
    heat = heat_map(staging, results, analysis, run)
    version = spec.version or (versions(spec.repository, spec.model) or [None])[-1]
    summary = _summary(analysis, measured, labels)
    adoption = _adoption(spec, options, run, run_dir, analysis)
    context = {"model": spec.model, "version": version if version is not None else "newest",
               "backend": measured.backend,
               "server": f"the Triton server at {options.url}" if options.url else
                         "the embedded tritonserver (nvidia-pytriton wheel), explicit model control",
               "protocol": spec.protocol, "request_batch_size": spec.request_batch_size,
               "interval_ms": spec.measurement.interval_ms,
               "stability_percentage": spec.measurement.stability_percentage,
               "max_trials": spec.measurement.max_trials, "strategy": describe_strategy(spec.strategy),
               "machine": f"{os.cpu_count()} CPU(s), {platform.machine()}, {platform.system()}",
               "started": started.isoformat(timespec="seconds"), "wall_seconds": wall,
               "seconds_per_point": summary["seconds_per_point"], "restarts": measured.restarts,
               "notes": ["perf_analyzer and Triton share this machine's cores: the client's own CPU use is "
                         "part of every figure."]
               + ([f"the in-process ceiling ran on this machine, the server at {options.url}: efficiency "
                   f"compares the two machines if they differ."] if options.url else [])}
    markdown = summary_markdown(run, context, results, labels, analysis, ceiling_ips, adoption)
    write_text_atomic(staging / "summary.md", markdown)
    write_json_atomic(staging / "spec.json", {"run": run, "url": options.url, "spec": spec.to_dict()})
    write_json_atomic(staging / "best.json", {
        "run": run, "model": spec.model, "version": version, "backend": measured.backend,
        "repository": str(spec.repository), "url": options.url, "spec": spec.to_dict(),
        "analysis": analysis.to_dict(ceiling_ips), "summary": summary,
        "ceiling": measured.ceiling.to_dict() if measured.ceiling else None, "adoption": adoption,
        "labels": {str(k): v for k, v in labels.items()}})
    files = {"results": str(run_dir / "results.csv"), "summary": str(run_dir / "summary.md"),
             "best": str(run_dir / "best.json"), "plot": str(run_dir / "throughput_vs_p99.png")}
    if heat is not None:
        files["heatmap"] = str(run_dir / heat.name)
    files["plots"] = str(run_dir / "plots")
    if adoption and adoption.get("written"):
        write_candidate(spec.repository, spec.model, measured.backend, analysis.best.point.config, run)
        files["best_config"] = adoption["written"]
    return BenchmarkOutcome(run, run_dir, results, analysis, measured.ceiling, rows, summary, markdown, files)


def track(outcome: BenchmarkOutcome, spec: BenchmarkSpec, options: RunOptions,
          log: Callable[[str], None] = print) -> None:
    """Log a published run to MLflow; a failure is reported on the outcome, not raised (the files are out)."""
    try:
        from mnist_etc.tracking.benchmark import log_benchmark_run

        ceiling_ips = outcome.ceiling.images_per_second if outcome.ceiling else None
        outcome.mlflow_run_id = log_benchmark_run(options.tracking_uri(), options.artifacts, outcome.run,
                                                  outcome.run_dir, {"run": outcome.run, **spec.to_dict()},
                                                  outcome.summary, _point_metrics(outcome.results, ceiling_ips))
    except Exception as exc:  # the measurements are published already; tracking is reported, not fatal
        outcome.mlflow_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        log(f"warning: MLflow logging failed ({outcome.mlflow_error}); results are in {outcome.run_dir}")


def _point_metrics(results: list[PointResult], ceiling_ips: float | None) -> list[tuple[int, dict[str, float]]]:
    """Each measured point's figures, by its index: what the run's MLflow curves show."""
    rows = []
    for r in results:
        if r.ok:
            figures = {"throughput": r.throughput, "p99_ms": r.p99_ms, "concurrency": float(r.point.concurrency)}
            eff = r.efficiency(ceiling_ips)
            if eff is not None:
                figures["serving_efficiency"] = eff
            rows.append((r.index, figures))
    return rows
