"""Scale-out figures: the smoke sweep through work pool mnist-etc-trials with 2 and with 1 worker, against the
thread runner in one process, and what each trial pays for going through Prefect and MLflow.

    .venv/bin/python benchmarks/bench_scale_out.py              # ~15 min on 2 quiet cores
    .venv/bin/python benchmarks/bench_scale_out.py --trials 4

It starts the scaled stack itself (deployments/local_stack.py up --workers 2 --database-url <a throwaway
PostgreSQL database>, in a temporary directory), runs search_spaces/smoke.yaml three times with the same sampler
seed under three study names, and stops the stack and drops the databases at the end:
- threads:   the library's thread runner in this process (LocalRunner), parallelism 2;
- pool x2:   --runner deployment, parallelism 2, workers trials-1 and trials-2;
- pool x1:   --runner deployment, parallelism 1, trials-2 stopped first.
All three use the stack's MLflow server and the study on PostgreSQL, so only the runner differs.

Per trial of a pool run, from Prefect's flow-run times and Optuna's trial times:
- to RUNNING: Optuna ask (datetime_start) -> the trial's flow run RUNNING (flow-run creation, the worker's poll,
  the flow-run process start, the deployment's pull step);
- in-flow extra: flow-run RUNNING -> its end, minus trial_seconds (imports, the upload to MLflow);
- back: flow-run end -> Optuna tell (datetime_complete): the runner's poll, the download, the tell.
Printed as Markdown tables; JSON in <artifacts>/bench_scale_out.json.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from mnist_etc.atomic import write_json_atomic  # noqa: E402

_spec = importlib.util.spec_from_file_location("local_stack", ROOT / "deployments" / "local_stack.py")
local_stack = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(local_stack)


def sweep(study: str, trials: int, parallelism: int, runner, storage: str, mlflow_uri: str, artifacts: Path) -> dict:
    from mnist_etc.sweep import SweepOptions, run_sweep
    from mnist_etc.sweep.space import load_search_space

    space = load_search_space(ROOT / "search_spaces" / "smoke.yaml").with_overrides(
        study=study, trials=trials, parallelism=parallelism)
    options = SweepOptions.build(storage=storage, artifacts=artifacts, mlflow_uri=mlflow_uri)
    t0 = time.perf_counter()
    summary = run_sweep(space, options, runner, log=lambda line: print(f"  [{study}] {line}", flush=True))
    wall = time.perf_counter() - t0
    return {"study": study, "wall_seconds": round(wall, 1), "counts": summary.counts,
            "trial_seconds": [round(s, 1) for s in summary.trial_seconds]}


def pool_overheads(study: str, storage: str) -> list[dict]:
    import optuna
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    from mnist_etc.sweep.storage import open_storage

    trials = {t.number: t for t in optuna.load_study(study_name=study, storage=open_storage(storage)).trials
              if t.state.name == "COMPLETE"}
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["trial"])), limit=200)
    rows = []
    for run in runs:
        prefix = f"{study}-trial-"
        if not run.name.startswith(prefix) or not run.state.is_completed():
            continue
        t = trials.get(int(run.name[len(prefix):]))
        if t is None or run.start_time is None or run.end_time is None:
            continue
        inside = float(t.user_attrs.get("trial_seconds", 0.0))
        rows.append({"trial": t.number, "trial_seconds": round(inside, 1),
                     "to_running": round((run.start_time - t.datetime_start.astimezone()).total_seconds(), 1),
                     "in_flow_extra": round((run.end_time - run.start_time).total_seconds() - inside, 1),
                     "back": round((t.datetime_complete.astimezone() - run.end_time).total_seconds(), 1)})
    return sorted(rows, key=lambda r: r["trial"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--artifacts", type=Path, default=ROOT / "artifacts" / "bench")
    ap.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432",
                    help="PostgreSQL server (a throwaway database is created there and dropped)")
    args = ap.parse_args()
    if args.trials < 2:
        raise SystemExit(f"--trials {args.trials} is too few to compare runners; pass 2 or more.")

    base = f"mnist_etc_bench_{uuid.uuid4().hex[:8]}"
    dbs = local_stack.Databases(f"{args.postgres}/{base}")
    stack_dir = Path(tempfile.mkdtemp(prefix="bench-scale-out-"))
    args.artifacts.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-scale-out-artifacts-", dir=args.artifacts))
    t0 = time.perf_counter()
    state = local_stack.up(stack_dir, local_stack.free_port(), dbs.url.render_as_string(hide_password=False),
                           workers=2)
    print(f"stack up in {time.perf_counter() - t0:.0f} s: Prefect {state['api_url']}, MLflow {state['mlflow_url']}",
          flush=True)
    os.environ["PREFECT_API_URL"] = state["api_url"]
    results = []
    try:
        from mnist_etc.sweep import LocalRunner
        from runners.deployment import DeploymentTrialRunner

        storage, mlflow_uri = dbs.study, state["mlflow_url"]
        r = sweep("bench-pool2", args.trials, 2, DeploymentTrialRunner(), storage, mlflow_uri, work)
        r.update(runner="pool x2 (--runner deployment, 2 workers)", overheads=pool_overheads("bench-pool2", storage))
        results.append(r)
        local_stack.kill_worker(stack_dir, "trials-2", signal.SIGTERM)
        time.sleep(5)
        r = sweep("bench-pool1", args.trials, 1, DeploymentTrialRunner(), storage, mlflow_uri, work)
        r.update(runner="pool x1 (--runner deployment, 1 worker)", overheads=pool_overheads("bench-pool1", storage))
        results.append(r)
        r = sweep("bench-threads", args.trials, 2, LocalRunner(2), storage, mlflow_uri, work)
        r.update(runner="threads (one process, parallelism 2)", overheads=[])
        results.append(r)
    finally:
        local_stack.down(stack_dir)
        dbs.drop_all()

    print(f"\nsearch_spaces/smoke.yaml, {args.trials} trials, same sampler seed; {os.cpu_count()} cores\n")
    print("| runner | sweep wall s | trials COMPLETE | mean trial_seconds |")
    print("| --- | --- | --- | --- |")
    for r in results:
        mean = statistics.mean(r["trial_seconds"]) if r["trial_seconds"] else float("nan")
        print(f"| {r['runner']} | {r['wall_seconds']} | {r['counts'].get('COMPLETE', 0)} | {mean:.1f} |")
    print("\nPer trial through the pool (median s): ask -> flow run RUNNING | in-flow extra (imports, upload) | "
          "flow-run end -> told (poll, download, tell)\n")
    print("| run | trials | to RUNNING | in-flow extra | back | total overhead |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        rows = r["overheads"]
        if not rows:
            continue
        med = {k: statistics.median(x[k] for x in rows) for k in ("to_running", "in_flow_extra", "back")}
        print(f"| {r['runner']} | {len(rows)} | {med['to_running']:.1f} | {med['in_flow_extra']:.1f} | "
              f"{med['back']:.1f} | {sum(med.values()):.1f} |")
    write_json_atomic(args.artifacts / "bench_scale_out.json", {"trials": args.trials, "cores": os.cpu_count(),
                                                                 "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
