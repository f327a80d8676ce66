"""Sizing a scaled-out sweep: the orchestrator's time per ask + tell as the study grows, on SQLite and on
PostgreSQL, with default.yaml's sampler (multi-objective TPE, multivariate, constant_liar: what keeps parallel
asks apart when many workers run trials at once), and the PostgreSQL connections one orchestrator holds.

    .venv/bin/python benchmarks/bench_study_ask.py                      # ~3 min; PostgreSQL at 127.0.0.1:5432
    .venv/bin/python benchmarks/bench_study_ask.py --sizes 0 100 500 --in-flight 10

For each size n, a fresh study is filled with n finished trials of default.yaml's space (random values, added
with add_trials, not asked), `--in-flight` trials are asked and left RUNNING (constant_liar counts them), then
`--asks` ask + tell pairs are timed. Printed as a Markdown table; JSON in artifacts/benchmarks/study_ask.json.
Each PostgreSQL study lives in a throwaway database, dropped afterwards.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import optuna  # noqa: E402

from mnist_etc.atomic import write_json_atomic  # noqa: E402
from mnist_etc.sweep.space import load_search_space  # noqa: E402
from mnist_etc.sweep.storage import open_storage  # noqa: E402
from mnist_etc.sweep.study import make_sampler  # noqa: E402

ADMIN = dict(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=5)


def finished_trials(space, n: int, rng: np.random.Generator) -> list:
    dists = space.distributions()
    trials = []
    for _ in range(n):
        params = {}
        for name, d in dists.items():
            if isinstance(d, optuna.distributions.CategoricalDistribution):
                params[name] = d.choices[rng.integers(len(d.choices))]
            elif isinstance(d, optuna.distributions.IntDistribution):
                params[name] = int(rng.integers(d.low, d.high + 1) // d.step * d.step) if d.step else d.low
                params[name] = min(max(params[name], d.low), d.high)
            else:
                v = float(rng.uniform(d.low, d.high))
                params[name] = min(d.high, d.low + round((v - d.low) / d.step) * d.step) if d.step else v
        trials.append(optuna.trial.create_trial(params=params, distributions=dists,
                                                values=[float(rng.uniform(0.5, 1)), float(rng.uniform(0, 0.3))]))
    return trials


def pg_connections(dbname: str) -> int:
    import psycopg2

    con = psycopg2.connect(**ADMIN)
    try:
        with con.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (dbname,))
            return int(cur.fetchone()[0])
    finally:
        con.close()


def measure(url: str, space, n: int, in_flight: int, asks: int, dbname: str | None) -> dict:
    storage = open_storage(url)
    study = optuna.create_study(study_name="sizing", storage=storage, directions=space.directions,
                                sampler=make_sampler(space, 0))
    if n:
        study.add_trials(finished_trials(space, n, np.random.default_rng(n)))
    dists = space.distributions()
    running = [study.ask(dists) for _ in range(in_flight)]
    ask_s, tell_s = [], []
    for i in range(asks):
        t0 = time.perf_counter()
        trial = study.ask(dists)
        t1 = time.perf_counter()
        study.tell(trial, [0.9, 0.1])
        ask_s.append(t1 - t0)
        tell_s.append(time.perf_counter() - t1)
    connections = pg_connections(dbname) if dbname else None
    for t in running:
        study.tell(t, state=optuna.trial.TrialState.FAIL)
    storage.remove_session()
    storage.engine.dispose()
    return {"finished": n, "in_flight": in_flight, "ask_ms_median": 1000 * statistics.median(ask_s),
            "ask_ms_max": 1000 * max(ask_s), "tell_ms_median": 1000 * statistics.median(tell_s),
            "pg_connections": connections}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[0, 100, 500, 1000])
    ap.add_argument("--in-flight", type=int, default=10, help="trials left RUNNING while asking (default 10)")
    ap.add_argument("--asks", type=int, default=10)
    ap.add_argument("--out", type=Path, default=ROOT / "artifacts" / "benchmarks" / "study_ask.json")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_search_space(ROOT / "search_spaces" / "default.yaml")
    import psycopg2

    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append({"storage": "sqlite", **measure(f"sqlite:///{tmp}/s.db", space, n, args.in_flight, args.asks,
                                                        None)})
        name = f"mnist_etc_bench_{uuid.uuid4().hex[:10]}"
        admin = psycopg2.connect(**ADMIN)
        admin.autocommit = True
        try:
            with admin.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
            rows.append({"storage": "postgresql", **measure(f"postgresql://postgres@127.0.0.1:5432/{name}", space, n,
                                                            args.in_flight, args.asks, name)})
        finally:
            with admin.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()
        print(f"... {n} finished trials done", file=sys.stderr)
    print(f"\ndefault.yaml's sampler (TPE, multivariate, constant_liar), {args.in_flight} trials in flight, "
          f"{args.asks} ask + tell pairs each\n")
    print("| storage | finished trials | ask ms (median / max) | tell ms (median) | PostgreSQL connections |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['storage']} | {r['finished']} | {r['ask_ms_median']:.0f} / {r['ask_ms_max']:.0f} | "
              f"{r['tell_ms_median']:.0f} | {r['pg_connections'] if r['pg_connections'] is not None else '-'} |")
    write_json_atomic(args.out, {"sampler": "tpe multivariate constant_liar", "in_flight": args.in_flight,
                                 "asks": args.asks, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
