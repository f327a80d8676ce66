"""Verbs `pipeline` (the main job: sweep, export, serve, benchmark, audit) and `audit` (the privacy audit)."""
from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pipeline", help="sweep -> export the champion -> serve on Triton -> benchmark -> "
                                        "privacy audit, with one summary", description=(
        "Run the Prefect flow `pipeline`: an Optuna sweep, export of its champion to ONNX and Triton, the "
        "test split served through an embedded Triton, a perf_analyzer benchmark of its batching and "
        "instance settings, and a privacy audit against the served model. Writes "
        "artifacts/pipeline/<run>/summary.md with the key plots. Without PREFECT_API_URL, Prefect runs a "
        "temporary local server for the run."))
    p.add_argument("--space", default="search_spaces/smoke.yaml", help="sweep search space (default %(default)s)")
    p.add_argument("--grid", default="search_spaces/benchmark_smoke.yaml",
                   help="benchmark grid (default %(default)s)")
    p.add_argument("--trials", type=int, help="override the number of sweep trials")
    p.add_argument("--parallelism", type=int, help="override the sweep's parallel trials")
    p.add_argument("--leakage-bound", type=float, default=0.9,
                   help="the audit fails above this mean direct cosine (default %(default)s)")
    p.add_argument("--run", help="run name (default: UTC timestamp); also names artifacts/pipeline/<run>")
    p.set_defaults(func=cmd_pipeline)

    a = sub.add_parser("audit", help="privacy audit of the served champion (the flow privacy-audit)",
                       description=(
        "Run the Prefect flow `privacy-audit`: hill-climbing reconstruction through the served Triton "
        "model, the in-process attack for comparison, loss-threshold membership inference, the epsilon "
        "statement, and a comparison with the previous audit. Exits 1 when the audit fails (leakage above "
        "the bound or grown by more than the margin). Report under artifacts/audits/<UTC time>/."))
    a.add_argument("--champion", help="MLflow model URI (default: models:/<newest sweep's model>@champion)")
    a.add_argument("--url", help="gRPC HOST:PORT of a running Triton (default: start the embedded one)")
    a.add_argument("--served-model", default="mnist_etc", help="served model name (default %(default)s)")
    a.add_argument("--victims", type=int, default=4, help="victims of the attack (default %(default)s)")
    a.add_argument("--n-iter", type=int, default=128, help="hill-climbing iterations (default %(default)s)")
    a.add_argument("--leakage-bound", type=float, default=0.9, help="fail above this (default %(default)s)")
    a.add_argument("--growth-margin", type=float, default=0.05,
                   help="fail when leakage grew more than this since the last audit (default %(default)s)")
    a.set_defaults(func=cmd_audit)


def cmd_pipeline(args: argparse.Namespace) -> int:
    from flows.pipeline import pipeline

    pipeline(space=args.space, grid=args.grid, trials=args.trials, parallelism=args.parallelism,
             leakage_bound=args.leakage_bound, run=args.run)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from flows.audit import AuditFailed, privacy_audit

    try:
        privacy_audit(champion=args.champion, triton_url=args.url, served_model=args.served_model,
                      victims=args.victims, n_iter=args.n_iter, leakage_bound=args.leakage_bound,
                      growth_margin=args.growth_margin)
    except AuditFailed as exc:
        print(f"mnist-etc audit: FAILED: {exc}", file=sys.stderr)
        return 1
    return 0
