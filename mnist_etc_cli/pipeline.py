"""Verb `pipeline`: the main job (sweep, export, serve, benchmark, audit) as one Prefect flow run."""
from __future__ import annotations

import argparse
import sys

from mnist_etc_cli.audit import add_policy_options


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
    policy = add_policy_options(p, prefix="audit-")
    p.add_argument("--run", help="run name (default: UTC timestamp); also names artifacts/pipeline/<run>")
    p.set_defaults(func=cmd_pipeline, settings={"policy": policy})


def cmd_pipeline(args: argparse.Namespace) -> int:
    # Everything a user can get wrong is checked here, before Prefect, a server or a training run starts.
    from mnist_etc.benchmark import resolve_spec
    from mnist_etc.sweep.space import load_search_space
    from mnist_etc.names import validate_name

    policy = args.settings["policy"].build(args)
    space = load_search_space(args.space).with_overrides(trials=args.trials, parallelism=args.parallelism)
    grid = resolve_spec(args.grid)
    if args.run is not None:
        validate_name(args.run, "--run")

    from flows.audit import AuditFailed
    from flows.pipeline import pipeline

    try:
        pipeline(space=space, grid=grid, run=args.run, audit=policy)   # validated above, passed as is
    except AuditFailed as exc:
        print(f"mnist-etc pipeline: FAILED: {exc}", file=sys.stderr)
        return 1
    return 0
