"""The scaled stack on several hosts (network namespaces, deployments/host_stack.py): a 3-trial sweep with two worker
hosts, then the same sweep under each partition fault, each measured. As root; ~20 min on 2 cores.

    .venv/bin/python benchmarks/bench_hosts.py                       # all scenarios
    .venv/bin/python benchmarks/bench_hosts.py --scenarios baseline worker-cut

Scenarios (each a new study of tests/test_hosts.py's HOST_SPACE: 3 trials, 2 at a time):
- baseline:       no fault.
- worker-cut:     worker host w1's link is set down while it runs a trial, and back up once the sweep is done.
- postgres-cut:   the orchestrator host loses its route to PostgreSQL (a blackhole route to 10.231.0.1 in its
                  namespace: new connections fail, open ones stall) for 30 s while a trial runs.
- mlflow-cut:     MLflow (10.231.0.3) unreachable from worker host w1 only (a blackhole route in w1's namespace)
                  for 60 s while w1 runs a trial.
- slow-link:      w1's Prefect traffic and every trial's MLflow traffic go through a proxy adding 200 ms to each
                  chunk in each direction and resetting every 5th new connection.
Each ends with: Optuna trial states (COMPLETE must be 3, RUNNING 0; a trial lost and retried shows as FAIL), trial
flow-run states, where each trial ran, and the recovery figures of that fault. JSON in --out.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deployments import host_stack, hosts  # noqa: E402
from deployments.fault_proxy import FaultProxy  # noqa: E402
from tests.test_hosts import HOST_SPACE  # noqa: E402

SCENARIOS = ("baseline", "worker-cut", "postgres-cut", "mlflow-cut", "slow-link")
POLL = 1.0
LOG_DIR = ROOT / "artifacts" / "bench" / "bench_hosts"   # each scenario's sweep output, with times


class Sweep:
    """A sweep on the orchestrator host in the background; every output line kept with its time."""

    def __init__(self, state: dict, study: str, extra: list[str] = ()) -> None:
        space = Path(state["root"]) / "orch" / f"{study}.yaml"
        space.write_text(HOST_SPACE.format(study=study))
        argv = [str(Path(sys.executable).parent / "mnist-etc"), "sweep", "--space", str(space), "--runner",
                "deployment", "--artifacts", str(Path(state["root"]) / "orch" / "artifacts"), *extra]
        self.t0 = time.monotonic()
        self.lines: list[tuple[float, str]] = []
        # COLUMNS: Prefect's console handler (rich) wraps at the terminal width, 80 in a pipe, which split the
        # lines matched below.
        self.proc = subprocess.Popen(host_stack.orchestrator_command(state, argv), cwd=ROOT,
                                     env={**host_stack.orchestrator_env(state), "COLUMNS": "1000"},
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip()))

    def first(self, text: str, after: float = 0.0) -> float | None:
        return next((t for t, line in list(self.lines) if t >= after and text in line), None)

    def wait(self, timeout: float = 1500) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = -9
        self.reader.join(timeout=10)
        self.wall = time.monotonic() - self.t0
        return rc


def running_on(state: dict, study: str, host: str, timeout: float = 300) -> str:
    """Wait until a trial of `study` runs on worker host `host`; its flow-run id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = {r["id"]: r for r in host_stack.trial_flow_runs(state, study)}
        for fid, where in host_stack.where_trials_ran(state, study).items():
            if where == host and runs[fid]["state_type"] == "RUNNING":
                return fid
        time.sleep(POLL)
    raise SystemExit(f"no trial of {study} ran on {host} within {timeout:.0f} s")


def study_states(state: dict, study: str) -> dict[str, int]:
    import optuna

    from mnist_etc.sweep.storage import open_storage

    from deployments.host_stack import local_stack

    secrets = local_stack.read_env_file(Path(state["secrets_file"]))
    storage = state["study_storage"].replace(f"{state['root_addr']}:{host_stack.PG_PROXY_PORT}", "127.0.0.1:5432")
    storage = storage.replace("_stack@", f"_stack:{secrets['PGPASSWORD']}@")
    counts: dict[str, int] = {}
    for t in optuna.load_study(study_name=study, storage=open_storage(storage)).trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def summary(state: dict, study: str, sweep: Sweep, rc: int, extra: dict) -> dict:
    time.sleep(3)
    runs = host_stack.trial_flow_runs(state, study)
    flow_states: dict[str, int] = {}
    for r in runs:
        flow_states[r["state_type"]] = flow_states.get(r["state_type"], 0) + 1
    result = {"study": study, "exit": rc, "wall_seconds": round(sweep.wall, 1), "optuna": study_states(state, study),
              "flow_runs": flow_states, "hosts": sorted(host_stack.where_trials_ran(state, study).values()),
              "tail": [line for _, line in sweep.lines[-4:]], **extra}
    log = LOG_DIR / f"{study}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(f"{t - sweep.t0:8.1f} {line}\n" for t, line in sweep.lines))
    result["sweep_log"] = str(log.relative_to(ROOT))
    print(json.dumps(result), flush=True)
    return result


def wait_authenticated(state: dict, timeout: float = 300) -> float:
    """Seconds until both servers answer an authenticated API request again."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            host_stack.api(state, "/flow_runs/filter", {"limit": 1})
            host_stack.api(state, "/api/2.0/mlflow/experiments/search?max_results=1", server="mlflow")
            return time.monotonic() - t0
        except OSError:
            time.sleep(0.5)
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    ap.add_argument("--dir", type=Path, default=Path("/tmp") / f"bench-hosts-{uuid.uuid4().hex[:6]}")
    ap.add_argument("--out", type=Path, default=ROOT / "artifacts" / "bench" / "bench_hosts.json")
    args = ap.parse_args()
    name = f"mnist_etc_bench_{uuid.uuid4().hex[:8]}"
    stack = host_stack.HostStack(args.dir, 2, f"postgresql://postgres@127.0.0.1:5432/{name}")
    results: dict = {}
    t0 = time.monotonic()
    try:
        state = stack.up()
        results["up_seconds"] = round(time.monotonic() - t0, 1)
        print(f"stack up in {results['up_seconds']} s", flush=True)
        net = stack.net
        w1 = net.hosts["w1"]
        orch = net.hosts["orch"]
        for scenario in args.scenarios:
            study = scenario.replace("-", "_")
            print(f"--- {scenario}", flush=True)
            extra: dict = {}
            if scenario == "baseline":
                sweep = Sweep(state, study)
                rc = sweep.wait()
                extra["secrets_found"] = host_stack.find_secrets(state)
                extra["pg_proxy_peers"] = host_stack.pg_proxy_peers(state)
            elif scenario == "worker-cut":
                sweep = Sweep(state, study)
                running_on(state, study, "w1")
                cut = time.monotonic()
                net.link_down(w1)
                rc = sweep.wait()
                # Whichever sees it first: the sweep's watcher ("set CRASHED by the sweep") or the server's zombie
                # automation (the sweep then reads CRASHED: "crashed (no heartbeat ..."); both end "run again".
                lost = sweep.first("the trial is run again", cut)
                extra["cut_after_sweep_start_s"] = round(cut - sweep.t0, 1)
                extra["lost_detected_after_s"] = round(lost - cut, 1) if lost else None
                extra["sweep_done_after_cut_s"] = round(sweep.t0 + sweep.wall - cut, 1)
                net.link_up(w1)
                healed = time.monotonic()
                # The worker host back: its worker polls again (ONLINE with a fresh heartbeat).
                from datetime import datetime, timedelta, timezone

                since = datetime.now(timezone.utc) + timedelta(seconds=1)
                back = None
                while time.monotonic() - healed < 180:
                    if host_stack.local_stack.online_workers(
                            state["api_url"], "mnist-etc-trials", since,
                            host_stack.local_stack.read_env_file(Path(state["secrets_file"]))[
                                "PREFECT_API_AUTH_STRING"]) >= {"w1-trials-1"}:
                        back = round(time.monotonic() - healed, 1)
                        break
                    time.sleep(POLL)
                extra["w1_online_after_link_up_s"] = back
                time.sleep(20)   # the cut trial's own process, back online, ends one way or another
            elif scenario == "postgres-cut":
                sweep = Sweep(state, study)
                running_on(state, study, "w1")
                net.blackhole(orch, state["root_addr"])
                time.sleep(30)
                net.unblackhole(orch, state["root_addr"])
                healed = time.monotonic()
                extra["servers_answer_after_heal_s"] = round(wait_authenticated(state), 1)
                nxt = None
                rc = sweep.wait()
                nxt = sweep.first(" COMPLETE:", healed)
                extra["next_trial_told_after_heal_s"] = round(nxt - healed, 1) if nxt else None
            elif scenario == "mlflow-cut":
                sweep = Sweep(state, study)
                running_on(state, study, "w1")
                net.blackhole(w1, orch.addrs[1])
                time.sleep(60)
                net.unblackhole(w1, orch.addrs[1])
                healed = time.monotonic()
                rc = sweep.wait()
                nxt = sweep.first(" COMPLETE:", healed)
                extra["next_trial_told_after_heal_s"] = round(nxt - healed, 1) if nxt else None
            else:   # slow-link
                prefect_proxy = FaultProxy((state["root_addr"], 0), (orch.addrs[0], 4200)).start()
                mlflow_proxy = FaultProxy((state["root_addr"], 0), (orch.addrs[1], 5000)).start()
                for p in (prefect_proxy, mlflow_proxy):
                    p.set(delay=0.2, drop_every=5)
                # w1's worker again, talking to Prefect through the proxy.
                old = next(w for w in state["workers"] if w["host"] == "w1")
                host_stack.local_stack.stop_groups(host_stack.local_stack.tree_groups([old["pgid"]]), 15.0)
                secrets = host_stack.local_stack.read_env_file(Path(state["worker_secrets_file"]))
                entry, _ = stack._start_worker(w1, list(net.hosts[h] for h in ("w1", "w2")),
                                               f"http://{prefect_proxy.address}/api", state["mlflow_url"], secrets)
                state["workers"] = [w for w in state["workers"] if w["host"] != "w1"] + [entry]
                stack.state = state
                stack._save()
                time.sleep(15)
                sweep = Sweep(state, study, ["--mlflow-uri", f"http://{mlflow_proxy.address}"])
                rc = sweep.wait()
                extra["proxy_dropped"] = {"prefect": prefect_proxy.dropped, "mlflow": mlflow_proxy.dropped}
                extra["proxy_connections"] = {"prefect": prefect_proxy.accepted, "mlflow": mlflow_proxy.accepted}
                prefect_proxy.stop()
                mlflow_proxy.stop()
            results[scenario] = summary(state, study, sweep, rc, extra)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2) + "\n")   # kept if a later scenario fails
    finally:
        stack.down(drop_databases=True)
        results["namespaces_left"] = hosts.namespaces() + hosts.root_links()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
