"""What N idle trial workers cost the servers: PostgreSQL connections per database and application, the Prefect
database's transactions per second, and resident memory per process.

    .venv/bin/python benchmarks/bench_pool_idle.py --workers 10     # ~2 min; PostgreSQL at 127.0.0.1:5432

It starts the scaled stack (deployments/local_stack.py up --workers N --database-url <throwaway database>) in a
temporary directory, lets it idle for --seconds (the workers poll for work every 2 s and send a heartbeat every
30 s), samples pg_stat_activity and pg_stat_database, then stops the stack and drops the databases.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_spec = importlib.util.spec_from_file_location("local_stack", ROOT / "deployments" / "local_stack.py")
local_stack = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(local_stack)


def rss_mb(pgid: int) -> float:
    """Resident memory of every process in group `pgid`, MB."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[2]) != pgid:
                continue
            total += int((entry / "statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            continue
    return total / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=60.0, help="idle time measured (default 60)")
    ap.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    args = ap.parse_args()
    import psycopg2

    base = f"mnist_etc_bench_{uuid.uuid4().hex[:8]}"
    dbs = local_stack.Databases(f"{args.postgres}/{base}")
    stack_dir = Path(tempfile.mkdtemp(prefix="bench-pool-idle-"))
    t0 = time.perf_counter()
    state = local_stack.up(stack_dir, local_stack.free_port(), dbs.url.render_as_string(hide_password=False),
                           workers=args.workers)
    started = time.perf_counter() - t0
    con = psycopg2.connect(host=dbs.host, port=dbs.port, user=dbs.url.username, dbname="postgres")
    con.autocommit = True

    def commits() -> int:
        with con.cursor() as cur:
            cur.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
                        (f"{base}_prefect",))
            return int(cur.fetchone()[0])

    try:
        time.sleep(15)   # past start-up
        c0, w0 = commits(), time.perf_counter()
        time.sleep(args.seconds)
        tps = (commits() - c0) / (time.perf_counter() - w0)
        with con.cursor() as cur:
            cur.execute("SELECT datname, application_name, count(*) FROM pg_stat_activity WHERE datname LIKE %s "
                        "GROUP BY 1, 2 ORDER BY 1, 2", (f"{base}%",))
            connections = [(d.replace(base, "NAME"), a or "-", n) for d, a, n in cur.fetchall()]
        memory = {p["name"]: round(rss_mb(p["pgid"]), 1) for p in state["processes"]}
    finally:
        local_stack.down(stack_dir)
        con.close()
        dbs.drop_all()

    trial_workers = [n for n in memory if n.startswith("trials-")]
    print(f"\n{args.workers} idle trial workers, stack up in {started:.0f} s, measured over {args.seconds:.0f} s; "
          f"{os.cpu_count()} cores\n")
    print("| database | application | connections |\n| --- | --- | --- |")
    for d, a, n in connections:
        print(f"| {d} | {a} | {n} |")
    print(f"\nPrefect database: {tps:.1f} transactions/s")
    print(f"Resident memory MB: Prefect server {memory.get('prefect-server')}, MLflow server "
          f"{memory.get('mlflow-server')}, trial workers {min(memory[n] for n in trial_workers)} to "
          f"{max(memory[n] for n in trial_workers)} each")
    print(json.dumps({"workers": args.workers, "tps_prefect": round(tps, 1), "connections": connections,
                      "memory_mb": memory}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
