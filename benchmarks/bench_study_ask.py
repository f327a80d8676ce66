"""Sizing a scaled-out sweep: the orchestrator's time per ask + tell as the study grows, on SQLite and on
PostgreSQL, for the project's samplers over default.yaml's search space (two objectives), and the PostgreSQL
connections one orchestrator holds.

    .venv/bin/python benchmarks/bench_study_ask.py                      # ~4 min on 2 cores; PostgreSQL at 127.0.0.1:5432
    .venv/bin/python benchmarks/bench_study_ask.py --sizes 0 100 --samplers tpe --asks 5

Samplers (mnist_etc.sweep.samplers): `tpe` is default.yaml's own (multi-objective TPE, multivariate,
constant_liar: the multi-worker case, it counts the RUNNING trials so parallel asks stay apart); `nsga2` and
`random` with their defaults. `grid` does not apply: default.yaml searches a continuous parameter.

For each storage, one study grows through `--sizes`: it is filled up to n finished trials (drawn at random
from the space's distributions in memory, then written with add_trials, not asked one by one; the slow
part, so the samplers share it). At each size, each sampler in turn loads the study, `--in-flight` trials
are added RUNNING (the sweep's other trials in flight, which constant_liar counts) and `--asks` cycles of
"tell the oldest running trial, ask a new one" are timed, as a refilling sweep runs them: under the study
lock (mnist_etc.sweep.locks.study_lock) on a storage from mnist_etc.sweep.storage.open_storage. After each
cycle pg_stat_activity is read for the connections to the study's database, by application_name.
The load average is recorded: on a busy machine every figure grows.
Printed as a Markdown table; JSON in artifacts/benchmarks/study_ask.json. Each PostgreSQL run lives in a
throwaway database, dropped afterwards.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402
import psycopg2  # noqa: E402

from mnist_etc.atomic import write_json_atomic  # noqa: E402
from mnist_etc.sweep import samplers  # noqa: E402
from mnist_etc.sweep.locks import study_lock  # noqa: E402
from mnist_etc.sweep.space import load_search_space  # noqa: E402
from mnist_etc.sweep.storage import open_storage  # noqa: E402

ADMIN = dict(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=5)
SAMPLERS = ("tpe", "nsga2", "random")


def sampler_settings(space, name: str):
    if name == "tpe":
        return space.sampler   # default.yaml's own: n_startup_trials 10, multivariate, constant_liar
    return {"nsga2": samplers.Nsga2Sampler, "random": samplers.RandomSampler}[name](name=name)


def random_trials(space, n: int, seed: int, state=None) -> list:
    """n trials with parameters drawn by Optuna's RandomSampler in memory (fast): COMPLETE with two objective
    values, or RUNNING. Trial i is in NSGA-II generation i // population_size, as if NSGA-II had asked it."""
    state = optuna.trial.TrialState.COMPLETE if state is None else state   # RUNNING is 0, falsy
    population = samplers.Nsga2Options().population_size
    memory = optuna.create_study(directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=seed))
    dists = space.distributions()
    trials = []
    for i in range(n):
        params = memory.ask(dists).params
        done = state == optuna.trial.TrialState.COMPLETE
        trials.append(optuna.trial.create_trial(
            state=state, params=params, distributions=dists,
            values=[i % 97 / 97, (i * 31) % 89 / 89] if done else None,
            system_attrs={"NSGAIISampler:generation": i // population} if done else None))
    return trials


def connections(admin, dbname: str) -> Counter:
    with admin.cursor() as cur:
        cur.execute("SELECT coalesce(nullif(application_name, ''), '(none)') FROM pg_stat_activity "
                    "WHERE datname = %s", (dbname,))
        return Counter("study lock" if app.startswith("mnist-etc sweep ") else f"optuna storage {app}"
                       for (app,) in cur.fetchall())


def grow(url: str, space, sampler_names: list[str], sizes: list[int], in_flight: int, asks: int, tmp: Path,
         admin=None, dbname: str | None = None) -> list[dict]:
    """One study through the sizes (filling is the slow part, so the samplers share it); a row per size and
    sampler. A sampler's timed cycles add `asks` COMPLETE trials, so the next sampler at that size sees them:
    the row says how many COMPLETE trials there were."""
    from optuna.trial import TrialState

    storage_name = "postgresql" if admin is not None else "sqlite"
    rows = []
    storage = open_storage(url)
    try:
        study = optuna.create_study(study_name="sizing", storage=storage, directions=space.directions)
        dists = space.distributions()
        pool = random_trials(space, max(sizes), seed=1)
        added = 0
        for n in sizes:
            t0 = time.perf_counter()
            study.add_trials(pool[added:n])
            fill_s, added = time.perf_counter() - t0, max(added, n)
            for sampler_name in sampler_names:
                sampler = samplers.make_sampler(sampler_settings(space, sampler_name), {}, 0)
                study = optuna.load_study(study_name="sizing", storage=storage, sampler=sampler)
                finished = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
                ask_s, tell_s, peak = [], [], Counter()
                with study_lock(tmp / "sizing", url, "sizing"):
                    # the sweep's other trials in flight (constant_liar counts them)
                    study.add_trials(random_trials(space, in_flight, seed=n + 2, state=TrialState.RUNNING))
                    running = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
                    for i in range(asks):
                        t1 = time.perf_counter()
                        study.tell(running.pop(0), [0.5 + i % 7 / 20, 0.1 + i % 5 / 50])
                        t2 = time.perf_counter()
                        running.append(study.ask(dists).number)
                        t3 = time.perf_counter()
                        tell_s.append(t2 - t1)
                        ask_s.append(t3 - t2)
                        if admin is not None:
                            now = connections(admin, dbname)
                            if sum(now.values()) > sum(peak.values()):
                                peak = now
                    for number in running:   # out of the way of the next measurement (samplers skip FAIL)
                        study.tell(number, state=TrialState.FAIL)
                rows.append({"storage": storage_name, "sampler": sampler_name, "finished": finished,
                             "in_flight": in_flight, "asks": asks, "fill_s": fill_s,
                             "ask_ms_median": 1000 * statistics.median(ask_s), "ask_ms_max": 1000 * max(ask_s),
                             "tell_ms_median": 1000 * statistics.median(tell_s),
                             "pg_connections_peak": sum(peak.values()) if admin is not None else None,
                             "pg_connections_by_holder": dict(peak) if admin is not None else None})
                print(f"... {storage_name} {sampler_name} {finished} finished: ask {rows[-1]['ask_ms_median']:.0f} ms, "
                      f"tell {rows[-1]['tell_ms_median']:.0f} ms (filled in {fill_s:.1f} s)", file=sys.stderr,
                      flush=True)
    finally:
        storage.remove_session()
        storage.engine.dispose()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[0, 100, 500, 1000], help="finished trials")
    ap.add_argument("--samplers", nargs="+", choices=SAMPLERS, default=list(SAMPLERS))
    ap.add_argument("--in-flight", type=int, default=10, help="trials kept RUNNING while asking (default 10)")
    ap.add_argument("--asks", type=int, default=8, help="timed tell + ask cycles per size (default 8)")
    ap.add_argument("--out", type=Path, default=ROOT / "artifacts" / "benchmarks" / "study_ask.json")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_search_space(ROOT / "search_spaces" / "default.yaml")
    sizes = sorted(set(args.sizes))
    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    rows = []
    admin = psycopg2.connect(**ADMIN)
    admin.autocommit = True
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rows += grow(f"sqlite:///{tmp}/optuna.db", space, args.samplers, sizes, args.in_flight, args.asks,
                         Path(tmp))
        dbname = f"mnist_etc_bench_{uuid.uuid4().hex[:10]}"
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{dbname}"')
        try:
            with tempfile.TemporaryDirectory() as tmp:
                rows += grow(f"postgresql://postgres@127.0.0.1:5432/{dbname}", space, args.samplers, sizes,
                             args.in_flight, args.asks, Path(tmp), admin, dbname)
        finally:
            with admin.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    finally:
        admin.close()
    machine = f"{os.cpu_count()} cores {platform.machine()}, Python {platform.python_version()}, Optuna {optuna.__version__}"
    load = f"load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    print(f"\nsearch_spaces/default.yaml ({len(space.distributions())} parameters, 2 objectives), {args.in_flight} "
          f"trials in flight, median of {args.asks} tell + ask cycles; {machine}; {load}\n")
    print("| storage | sampler | complete trials | ask ms (median / max) | tell ms (median) | "
          "PostgreSQL connections (peak) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in sorted(rows, key=lambda r: (r["sampler"], r["storage"], r["finished"])):
        conns = "-" if r["pg_connections_peak"] is None else (
            f"{r['pg_connections_peak']} ({', '.join(f'{k}: {v}' for k, v in sorted(r['pg_connections_by_holder'].items()))})")
        print(f"| {r['storage']} | {r['sampler']} | {r['finished']} | {r['ask_ms_median']:.0f} / "
              f"{r['ask_ms_max']:.0f} | {r['tell_ms_median']:.0f} | {conns} |")
    wall = time.perf_counter() - t_start
    print(f"\n{wall:.0f} s in all")
    write_json_atomic(args.out, {"command": " ".join(["benchmarks/bench_study_ask.py", *sys.argv[1:]]),
                                 "machine": machine, "load": load, "space": "search_spaces/default.yaml",
                                 "sampler_settings": {s: sampler_settings(space, s).model_dump() for s in args.samplers},
                                 "in_flight": args.in_flight, "asks": args.asks, "wall_s": wall, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
