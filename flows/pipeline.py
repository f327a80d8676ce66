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

from flows.audit import DEFAULT_POLICY, AuditFailed, audit_policy, lineage_of, privacy_audit
from flows.benchmark import benchmark
from flows.export import export
from flows.sweep import sweep
from mnist_etc.pipeline_report import PIPELINE_DIR, render_summary, save_pipeline_summary
from mnist_etc.triton.repository import validate_model_name
from tasks.serving import infer_task


def _run_name() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")


@flow(name="pipeline", log_prints=True,
      description="Sweep, export the champion, serve it on Triton, benchmark the serving config, audit privacy.")
def pipeline(space: str = "search_spaces/smoke.yaml", grid: str = "search_spaces/benchmark_smoke.yaml",
             trials: int | None = None, parallelism: int | None = None, served_model: str = "mnist_etc",
             repository: str = "triton/model_repository", audit_victims: int = DEFAULT_POLICY.attack.victims,
             audit_n_iter: int = DEFAULT_POLICY.attack.n_iter, max_epsilon: float = DEFAULT_POLICY.max_epsilon,
             allow_non_private: bool = DEFAULT_POLICY.allow_non_private,
             leakage_bound: float = DEFAULT_POLICY.leakage_bound,
             membership_auc_bound: float = DEFAULT_POLICY.membership_auc_bound,
             growth_margin: float = DEFAULT_POLICY.growth_margin,
             canary_audit: bool | None = DEFAULT_POLICY.canary_audit, canaries: int = DEFAULT_POLICY.canary.canaries,
             canary_confidence: float = DEFAULT_POLICY.canary.confidence,
             artifacts: str = "artifacts", run: str | None = None) -> dict[str, Any]:
    logger = get_run_logger()
    validate_model_name(served_model)
    audit_policy(victims=audit_victims, n_iter=audit_n_iter, max_epsilon=max_epsilon,
                 allow_non_private=allow_non_private, leakage_bound=leakage_bound,
                 membership_auc_bound=membership_auc_bound, growth_margin=growth_margin, canary_audit=canary_audit,
                 canaries=canaries, canary_confidence=canary_confidence)  # checked before the sweep
    run = run or _run_name()
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    swept = sweep(space=space, trials=trials, parallelism=parallelism, artifacts=artifacts)
    seconds["sweep"] = time.perf_counter() - t
    winner = swept.get("winner")
    if not winner:
        raise RuntimeError(f"the sweep of {space} chose no winner (see {swept['files'].get('summary_md')}); "
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
        bench = benchmark(grid=grid, url=server.grpc_url, model=served_model, version=exported["version"],
                          repository=repository, run=f"pipeline-{run}", artifacts=artifacts)
        seconds["benchmark"] = time.perf_counter() - t
        t = time.perf_counter()
        audit_state = privacy_audit(champion=champion, mlflow_tracking_uri=(winner.get("mlflow") or {}).get("tracking_uri"),
                                    served_model=served_model, repository=repository,
                                    triton_url=server.grpc_url, victims=audit_victims, n_iter=audit_n_iter,
                                    max_epsilon=max_epsilon, allow_non_private=allow_non_private,
                                    leakage_bound=leakage_bound, membership_auc_bound=membership_auc_bound,
                                    growth_margin=growth_margin, canary_audit=canary_audit, canaries=canaries,
                                    canary_confidence=canary_confidence,
                                    audits_dir=str(Path(artifacts) / "audits"), return_state=True)
        seconds["audit"] = time.perf_counter() - t
    audit = audit_state.result(raise_on_failure=False)
    failure = audit if isinstance(audit, BaseException) else None
    if failure is not None:
        from mnist_etc.privacy.audit import audit_summary, previous_audit

        # An audit that failed its tests has still written its record (the newest of its lineage): summarise
        # that one. An audit that broke wrote none, and an older record must not stand in for it.
        rec = (previous_audit(Path(artifacts) / "audits", lineage_of(champion))
               if champion and isinstance(failure, AuditFailed) else None)
        audit = audit_summary(rec) if rec else {"passed": False, "leakage": None, "membership_auc": None,
                                                "triton_images_per_second": 0.0, "report": None}
        audit["error"] = str(failure)
    markdown = render_summary(run, swept, exported, served, bench, audit, seconds)
    audit_grid = str(Path(audit["report"]) / "grid.png") if audit.get("report") else None
    out = save_pipeline_summary(Path(artifacts) / PIPELINE_DIR.name / run, markdown,
                                {"run": run, "sweep": swept, "export": exported, "serve": served,
                                 "benchmark": bench, "audit": audit, "seconds": seconds},
                                {"pareto.png": swept["files"].get("pareto_png"),
                                 "throughput_vs_p99.png": bench["files"].get("plot"),
                                 "heatmap.png": bench["files"].get("heatmap"), "audit_grid.png": audit_grid})
    create_markdown_artifact(key="pipeline-summary", markdown=markdown, description=f"Pipeline {run}: {out}")
    print(markdown)
    print(f"summary and plots: {out}/summary.md")
    if isinstance(failure, AuditFailed):
        raise AuditFailed(f"the privacy audit failed: {failure}")
    if failure is not None:
        raise RuntimeError(f"the privacy audit did not finish: {failure}") from failure
    return {"run": run, "summary": str(out / "summary.md"), "seconds": seconds, "audit_passed": audit["passed"]}


if __name__ == "__main__":
    import sys

    from mnist_etc_cli.main import main

    sys.exit(main(["pipeline", *sys.argv[1:]]))
