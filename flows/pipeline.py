"""Prefect flow `pipeline`, the product's main job: sweep -> export the champion -> serve -> benchmark ->
privacy audit -> one summary under `artifacts/pipeline/<run>/` (summary.md with the key plots).

    mnist-etc pipeline                        # what `make demo` runs, on the embedded defaults
    prefect deployment run 'pipeline/demo' --watch

One embedded Triton server (explicit model control, 127.0.0.1) serves the exported champion for the
serve check (the test split inferred through it, accuracy compared), the benchmark (which reconfigures it
point by point and restores it) and the audit (which attacks it); it is stopped at the end. The run
fails, after writing the summary, if the audit fails.
"""
from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.audit import AuditFailed, privacy_audit
from flows.benchmark import benchmark
from flows.export import export
from flows.sweep import sweep
from mnist_etc.benchmark.grid import BenchmarkOverrides, BenchmarkSpec
from mnist_etc.benchmark.run import RunOptions
from mnist_etc.export_source import lineage_of
from mnist_etc.markdown_images import inline_images
from mnist_etc.pipeline_report import PIPELINE_DIR, render_summary, save_pipeline_summary
from mnist_etc.audit.config import AuditConfig
from mnist_etc.sweep.space import SearchSpace
from mnist_etc.triton.repository import DEFAULT_MODEL_NAME, DEFAULT_REPOSITORY, validate_model_name
from tasks.serving import infer_task


def _run_name() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")


@flow(name="pipeline", log_prints=True,
      description="Sweep, export the champion, serve it on Triton, benchmark the serving config, audit privacy.")
def pipeline(space: str | SearchSpace = "search_spaces/smoke.yaml",
             grid: str | BenchmarkSpec = "search_spaces/benchmark_smoke.yaml",
             trials: int | None = None, parallelism: int | None = None, served_model: str = DEFAULT_MODEL_NAME,
             repository: str = str(DEFAULT_REPOSITORY), audit: AuditConfig = AuditConfig(),
             artifacts: str = "artifacts", run: str | None = None) -> dict[str, Any]:
    logger = get_run_logger()
    validate_model_name(served_model)
    run = run or _run_name()
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    swept = sweep(space=space, trials=trials, parallelism=parallelism, artifacts=artifacts)
    seconds["sweep"] = time.perf_counter() - t
    winner = swept.get("winner")
    if not winner:
        raise RuntimeError(f"the sweep of {getattr(space, 'source', space)} chose no winner (see {swept['files'].get('summary_md')}); "
                           f"nothing to export.")
    t = time.perf_counter()
    exported = export(winner=swept["files"]["winner_json"], name=served_model, repository=repository)
    seconds["export"] = time.perf_counter() - t
    registered = (winner.get("mlflow") or {}).get("registered_model")
    champion = f"models:/{registered}@champion" if registered else None

    from mnist_etc.triton.server import ServerConfig, TritonServer

    with TritonServer(ServerConfig(Path(repository), model_control_mode="explicit",
                                   load_models=(served_model,))) as server:
        logger.info("serving %s v%d on %s (gRPC) / %s (HTTP)", served_model, exported["version"], server.grpc_url,
                    server.http_url)
        t = time.perf_counter()
        served = infer_task(served_model, exported["version"], server.grpc_url, repository,
                            str(Path(artifacts) / "inference"), None)
        served["url"] = server.grpc_url
        seconds["serve"] = time.perf_counter() - t
        t = time.perf_counter()
        bench = benchmark(grid=grid, overrides=BenchmarkOverrides(model=served_model, version=exported["version"],
                                                                  repository=repository),
                          options=RunOptions(url=server.grpc_url, run=f"pipeline-{run}", artifacts=artifacts))
        seconds["benchmark"] = time.perf_counter() - t
        t = time.perf_counter()
        audit_state = privacy_audit(champion=champion, mlflow_tracking_uri=(winner.get("mlflow") or {}).get("tracking_uri"),
                                    served_model=served_model, repository=repository, triton_url=server.grpc_url,
                                    policy=audit, audits_dir=str(Path(artifacts) / "audits"), return_state=True)
        seconds["audit"] = time.perf_counter() - t
    audited = audit_state.result(raise_on_failure=False)
    failure = audited if isinstance(audited, BaseException) else None
    if failure is not None:
        from mnist_etc.audit.record import audit_summary
        from mnist_etc.audit.run import previous_audit

        # An audit that failed its tests has still written its record (the newest of its lineage): summarise
        # that one. An audit that broke wrote none, and an older record must not stand in for it.
        rec = (previous_audit(Path(artifacts) / "audits", lineage_of(champion))
               if champion and isinstance(failure, AuditFailed) else None)
        audited = audit_summary(rec) if rec else {"passed": False, "leakage": None, "membership_auc": None,
                                                "triton_images_per_second": 0.0, "report": None}
        audited["error"] = str(failure)
    markdown = render_summary(run, swept, exported, served, bench, audited, seconds)
    audit_grid = str(Path(audited["report"]) / "grid.png") if audited.get("report") else None
    out = save_pipeline_summary(Path(artifacts) / PIPELINE_DIR.name / run, markdown,
                                {"run": run, "sweep": swept, "export": exported, "serve": served,
                                 "benchmark": bench, "audit": audited, "seconds": seconds},
                                {"pareto.png": swept["files"].get("pareto_png"),
                                 "throughput_vs_p99.png": bench["files"].get("plot"),
                                 "heatmap.png": bench["files"].get("heatmap"), "audit_grid.png": audit_grid})
    create_markdown_artifact(key="pipeline-summary", markdown=inline_images(markdown, out),
                             description=f"Pipeline {run}: {out}")
    print(markdown)
    print(f"summary and plots: {out}/summary.md")
    if isinstance(failure, AuditFailed):
        raise AuditFailed(f"the privacy audit failed: {failure}")
    if failure is not None:
        raise RuntimeError(f"the privacy audit did not finish: {failure}") from failure
    return {"run": run, "summary": str(out / "summary.md"), "seconds": seconds, "audit_passed": audited["passed"]}


if __name__ == "__main__":
    import sys

    from mnist_etc_cli.main import main

    sys.exit(main(["pipeline", *sys.argv[1:]]))
