"""Verbs `sweep` (Optuna trials as Prefect tasks) and `dashboard` (optuna-dashboard on the study storage)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

RUNNERS = ("threads", "processes", "deployment")   # flows/sweep.py's task_runner values
STORAGE_HELP = ("Optuna storage URL: sqlite:///PATH or postgresql://USER@HOST:PORT/DB "
                "(default: sqlite:///<artifacts>/sweeps/optuna.db)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="Optuna sweep over training settings: accuracy vs. attack leakage",
                       description=(
        "Run the Optuna study of a search space: each trial trains a model with sampled settings and "
        "attacks it; objectives are test accuracy (max) and the attack's reconstruction similarity "
        "(min). Trials run as Prefect tasks, PARALLELISM at a time. Rerunning a study resumes it: trials "
        "a killed sweep left running are failed (and retried if the space allows), finished ones are "
        "kept. Writes artifacts/sweeps/<study>/ (trial-<n>/, pareto.png, trials.csv, summary.md, "
        "winner.json) and logs to MLflow (parent run per study, nested run per trial, winner registered "
        "with alias 'champion')."),
        epilog="Watch it: 'mnist-etc dashboard' (Optuna), 'mlflow ui --backend-store-uri "
               "sqlite:///artifacts/mlflow.db --host 127.0.0.1' (MLflow), and the Prefect UI when "
               "PREFECT_API_URL points at a Prefect server.")
    p.add_argument("--space", type=Path, required=True, help="search space YAML, e.g. search_spaces/smoke.yaml")
    p.add_argument("--trials", type=int, help="trials the study should hold when done (default: the YAML's)")
    p.add_argument("--parallelism", type=int, help="trials run at a time (default: the YAML's)")
    p.add_argument("--storage", help=STORAGE_HELP)
    p.add_argument("--study", help="study name (default: the YAML's); letters, digits, '-', '_'")
    p.add_argument("--mlflow-uri", help="MLflow tracking URI (default: sqlite:///<artifacts>/mlflow.db)")
    p.add_argument("--runner", "--task-runner", dest="runner", choices=RUNNERS, default="threads",
                   help="where trials run: threads or processes of this flow run (Prefect task runners), or "
                        "deployment: one flow run per trial on work pool mnist-etc-trials, served by workers on "
                        "any machine (needs PREFECT_API_URL, the trial/default deployment and an http:// "
                        "--mlflow-uri; --storage and --mlflow-uri default to $MNIST_ETC_STUDY_STORAGE and "
                        "$MLFLOW_TRACKING_URI, which the scaled stack's env.sh sets); default: threads. "
                        "--task-runner is the old name.")
    p.add_argument("--no-prefect", action="store_true",
                   help="run trials in a plain thread pool without Prefect (no Prefect server start-up)")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="output root (default: artifacts)")
    p.set_defaults(func=cmd_sweep)

    d = sub.add_parser("dashboard", help="optuna-dashboard on the sweep storage, with trial images",
                       description=(
        "Serve optuna-dashboard on 127.0.0.1 for the study storage (with gunicorn, a production WSGI server), with the "
        "trials' images (autoencoder and attack reconstructions) from the Optuna artifact store. Safe to keep open during a sweep: "
        "SQLite storage runs in WAL mode, so the dashboard's reads never block the sweep's writes."))
    d.add_argument("--storage", help=STORAGE_HELP)
    d.add_argument("--study", help="print the URL of this study's page")
    d.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (default: 8080)")
    d.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="output root (default: artifacts)")
    d.set_defaults(func=cmd_dashboard)

    u = sub.add_parser("ui", help="the MLflow UI on 127.0.0.1 for the project's tracking store", description=(
        "Serve the MLflow UI (mlflow ui) on 127.0.0.1 for the project's tracking store: the sweeps' parent and "
        "trial runs, the registered champion, the audit runs and their images. Ctrl-C stops it."))
    u.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1 (default: 5000)")
    u.add_argument("--artifacts", type=Path, default=Path("artifacts"),
                   help="output root whose mlflow.db is the store (default: artifacts)")
    u.add_argument("--tracking-uri", help="another tracking store (default: sqlite:///<artifacts>/mlflow.db)")
    u.set_defaults(func=cmd_ui)


def cmd_sweep(args: argparse.Namespace) -> int:
    from mnist_etc.errors import UserError
    from mnist_etc.sweep import LocalRunner, SweepOptions, run_sweep
    from mnist_etc.sweep.orchestrator import preflight
    from mnist_etc.sweep.space import load_search_space
    from mnist_etc.sweep.storage import open_storage

    # Everything a user can get wrong is checked here, before Prefect starts its server.
    space = load_search_space(args.space).with_overrides(study=args.study, trials=args.trials,
                                                         parallelism=args.parallelism)
    if args.runner == "deployment" and not args.no_prefect:   # as flows/sweep.py: the scaled stack's env.sh
        from mnist_etc.sweep.transport import scaled_defaults

        args.storage, args.mlflow_uri = scaled_defaults(args.storage, args.mlflow_uri)
    options = SweepOptions.build(storage=args.storage, artifacts=args.artifacts, mlflow_uri=args.mlflow_uri)
    open_storage(options.storage_url)
    preflight(space)
    if args.no_prefect and args.runner == "deployment":
        raise UserError("--no-prefect runs the trials in this process; it cannot be combined with --runner "
                        "deployment (drop one of them).")
    if args.runner == "deployment":   # the Prefect API, the MLflow server and trial/default, before any flow run
        from runners.deployment import check_deployment_runner

        check_deployment_runner(options.mlflow_uri)
    if args.no_prefect:
        summary = run_sweep(space, options, LocalRunner(space.parallelism))
        print_summary(summary.to_dict())
        return 0
    # This machine may be offline: the temporary Prefect server's telemetry would only log an error.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.sweep import sweep

    # The validated search space itself, overrides applied: the flow does not read the file again.
    result = sweep(space=space, storage=args.storage, mlflow_uri=args.mlflow_uri, task_runner=args.runner,
                   artifacts=str(args.artifacts))
    print_summary(result)
    return 0


def print_summary(summary: dict) -> None:
    counts = ", ".join(f"{n} {s.lower()}" for s, n in summary["counts"].items() if n)
    print(f"\nstudy {summary['study']}: {counts}; ran {summary['ran']} trial(s) in {summary['wall_seconds']:.1f} s")
    if summary["best_accuracy"] is not None:
        print(f"best accuracy {summary['best_accuracy']:.4f}; lowest leakage {summary['lowest_leakage']:.4f}")
    w = summary.get("winner")
    if w:
        reg = w["mlflow"]
        eps_search = w.get("epsilon_search")
        print(f"winner: trial {w['trial']} {w['values']} epsilon {w['epsilon']} (its training), epsilon_search "
              f"{'not accounted' if eps_search is None else eps_search} (the search that chose it); model "
              f"{w['model_dir']}")
        if reg.get("version"):
            print(f"registered: MLflow model {reg['registered_model']} version {reg['version']} alias champion")
    for name, path in summary["files"].items():
        print(f"{name}: {path}")


def cmd_dashboard(args: argparse.Namespace) -> int:
    from mnist_etc.errors import UserError
    from mnist_etc.sweep import SweepOptions
    from mnist_etc.ports import port_is_free
    from mnist_etc.sweep.storage import open_storage, sqlite_path

    if not 1 <= args.port <= 65535:
        raise UserError(f"--port must be in 1..65535, got {args.port}.")
    options = SweepOptions.build(storage=args.storage, artifacts=args.artifacts)
    db = sqlite_path(options.storage_url)
    if db is not None and not db.exists():  # opening it would create an empty one
        raise UserError(f"no study storage at {options.storage_label} yet; run 'mnist-etc sweep' first or pass "
                        f"--storage.")
    if not port_is_free(args.port):
        raise UserError(f"port {args.port} on 127.0.0.1 is in use; pass --port with a free one "
                        f"(for example --port {args.port + 1}).")
    url = f"http://127.0.0.1:{args.port}/dashboard/"
    if args.study:
        storage = open_storage(options.storage_url)
        try:
            url += f"studies/{storage.get_study_id_from_name(args.study)}"
        except KeyError:
            raise UserError(f"study {args.study!r} is not in {options.storage_label}; omit --study to list "
                            f"all studies.") from None
    from mnist_etc.sweep.dashboard import serve_dashboard

    print(f"optuna-dashboard (gunicorn) for {options.storage_label} at {url} (Ctrl-C stops it)", flush=True)
    serve_dashboard(options.storage_url, options.optuna_artifacts, args.port)
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    import subprocess
    import sys

    from mnist_etc.errors import UserError
    from mnist_etc.ports import port_is_free
    from mnist_etc.sweep.storage import sqlite_path
    from mnist_etc.tracking.layout import default_tracking_uri
    from mnist_etc.tracking.store import check_tracking_uri

    if not 1 <= args.port <= 65535:
        raise UserError(f"--port must be in 1..65535, got {args.port}.")
    uri = check_tracking_uri(args.tracking_uri) if args.tracking_uri else default_tracking_uri(args.artifacts)
    db = sqlite_path(uri) if uri.startswith("sqlite:") else None
    if uri.startswith("sqlite:") and (db is None or not db.exists()):
        raise UserError(f"no MLflow store at {uri} yet; run 'mnist-etc sweep' first or pass --tracking-uri.")
    if not port_is_free(args.port):
        raise UserError(f"port {args.port} on 127.0.0.1 is in use; pass --port with a free one "
                        f"(for example --port {args.port + 1}).")
    print(f"MLflow UI for {uri} at http://127.0.0.1:{args.port}/ (Ctrl-C stops it)", flush=True)
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                             "--host", "127.0.0.1", "--port", str(args.port)])
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(timeout=30)
        return 0
