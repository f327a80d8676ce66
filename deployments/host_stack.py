"""The scaled stack on several hosts of one machine (network namespaces, deployments/hosts.py), as root:

    .venv/bin/python deployments/host_stack.py up --workers 2 \\
        --database-url postgresql://postgres@127.0.0.1:5432/mnist_etc        # make stack-up SCALE=2 HOSTS=1
    .venv/bin/python deployments/host_stack.py sweep -- --space search_spaces/smoke.yaml --trials 3
    .venv/bin/python deployments/host_stack.py down                          # make stack-down HOSTS=1

The hosts, all on the test subnet 10.231.0.0/24 (a bridge in namespace mnetc-sw):
- 10.231.0.1, the root namespace: PostgreSQL stays on 127.0.0.1:5432; a TCP proxy (deployments/fault_proxy.py)
  on 10.231.0.1:15432 forwards to it and records who connects (only the orchestrator may).
- mnetc-orch, the orchestrator: `deployments/local_stack.py up --host 10.231.0.2 --mlflow-host 10.231.0.3` runs
  there (Prefect server :4200, MLflow server :5000 with its basic-auth app, the sweep pool's worker), on PostgreSQL
  through the proxy; the sweep runs there too (`sweep`). Its files live in <dir>/orch/.
- mnetc-w1 .. mnetc-wN (10.231.0.11 ..): one trial worker each (pool mnist-etc-trials, one trial at a time), its
  own directory <dir>/hosts/wI/ (working directory, MNIST_ETC_WORKER_DIR, HOME, TMPDIR, PREFECT_HOME), and a mount
  namespace in which <dir>/orch/ and the other workers' directories are empty and read-only: a worker cannot read
  a file of the orchestrator's. It knows the two server URLs and the credentials of worker-secrets.env only.
The repository and the venv are shared, as a clone at the same path on each machine would be (docs/scale-out.md).
Servers bind test-subnet addresses, so authentication is on (local_stack.py): secrets in <dir>/orch/stack/.
`down` stops every process, removes every namespace and link, and with --drop-databases drops the databases.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:   # run as a script: deployments/ is sys.path[0], the repository is not
    sys.path.insert(0, str(REPO))

from deployments.hosts import PREFIX, TestNet, netns_supported, remove_leftovers  # noqa: E402
from mnist_etc.errors import UserError  # noqa: E402

_spec = importlib.util.spec_from_file_location("local_stack", REPO / "deployments" / "local_stack.py")
local_stack = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(local_stack)

DEFAULT_DIR = REPO / "artifacts" / "hosts"
PREFECT_PORT = 4200
MLFLOW_PORT = 5000
PG_PROXY_PORT = 15432
ORCH_INDEXES = (2, 3)          # .2 Prefect, .3 MLflow: one host, two addresses, so one can be cut alone
WORKER_INDEX = 10              # worker I is .(10 + I)
STATE_FILE = "hosts.json"
# What a worker host inherits from this process's environment: nothing of the orchestrator's (no PREFECT_*, MLFLOW_*,
# MNIST_ETC_*, PG*), only what finds programs and the repository's code.
INHERITED = ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "TF_CPP_MIN_LOG_LEVEL")


def python_bin() -> str:
    return sys.executable


class HostStack:
    """One multi-host stack; `up()` then `down()` (also after a failure: `down()` removes whatever was made)."""

    def __init__(self, root: Path, workers: int, database_url: str, prefect_port: int = PREFECT_PORT,
                 mlflow_port: int = MLFLOW_PORT) -> None:
        local_stack.check_workers(workers)
        self.root = Path(root).resolve()
        self.workers = workers
        self.dbs = local_stack.Databases(database_url)
        self.net = TestNet()
        self.prefect_port, self.mlflow_port = prefect_port, mlflow_port
        self.orch_dir = self.root / "orch"
        self.stack_dir = self.orch_dir / "stack"
        self.state: dict[str, Any] = {}

    # ----------------------------------------------------------------------------------------------- up

    def up(self, timeout: float = 180.0) -> dict:
        reason = netns_supported()
        if reason:
            raise UserError(f"the multi-host stack {reason}.")
        self.dbs.check_reachable()   # before anything starts, from this (the root) namespace
        state_file = self.root / STATE_FILE
        if state_file.exists():
            raise UserError(f"a multi-host stack is recorded in {state_file}; run 'down' first.")
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            return self._up(timeout)
        except BaseException:
            self.down()
            raise

    def _up(self, timeout: float) -> dict:
        net = self.net
        net.open()
        orch = net.add_host("orch", *ORCH_INDEXES)
        hosts = [net.add_host(f"w{i}", WORKER_INDEX + i) for i in range(1, self.workers + 1)]
        prefect_url = f"http://{orch.addrs[0]}:{self.prefect_port}/api"
        mlflow_url = f"http://{orch.addrs[1]}:{self.mlflow_port}"
        self.state = {"root": str(self.root), "prefix": net.prefix, "subnet": str(net.net),
                      "root_addr": net.root_addr, "orch": {"ns": orch.ns, "addrs": orch.addrs},
                      "api_url": prefect_url, "mlflow_url": mlflow_url, "stack_dir": str(self.stack_dir),
                      "database_url": self.dbs.url.set(password=None).render_as_string(hide_password=False),
                      "workers": [], "pgids": []}
        self._save()

        # PostgreSQL for the orchestrator host: a proxy on the root namespace's test address.
        log = self.root / "pg-proxy.log"
        proxy = local_stack.spawn([python_bin(), str(REPO / "deployments" / "fault_proxy.py"), "--listen",
                                   f"{net.root_addr}:{PG_PROXY_PORT}", "--target", f"{self.dbs.host}:{self.dbs.port}",
                                   # Only the orchestrator's addresses: PostgreSQL is not reachable from a worker host.
                                   *(a for addr in orch.addrs for a in ("--allow", addr))],
                                  dict(os.environ), log)
        self.state.update(pg_proxy={"pgid": proxy.pid, "log": str(log), "address": f"{net.root_addr}:{PG_PROXY_PORT}"})
        self.state["pgids"].append(proxy.pid)
        self._save()
        via_proxy = self.dbs.url.set(host=net.root_addr, port=PG_PROXY_PORT).render_as_string(hide_password=False)

        # The orchestrator: local_stack's `up` in its namespace (servers, pools, deployments, the sweep's worker).
        self.orch_dir.mkdir(parents=True, exist_ok=True)
        up = subprocess.run(net.command(orch, [
            python_bin(), str(REPO / "deployments" / "local_stack.py"), "up", "--dir", str(self.stack_dir),
            "--host", orch.addrs[0], "--mlflow-host", orch.addrs[1], "--port", str(self.prefect_port),
            "--mlflow-port", str(self.mlflow_port), "--mlflow", "--database-url", via_proxy]),
            cwd=REPO, env=dict(os.environ, PWD=str(REPO)), capture_output=True, text=True, timeout=timeout + 120)
        if up.returncode != 0:
            raise SystemExit(f"local_stack.py up on host {orch.ns} failed (exit {up.returncode}):\n"
                             f"{up.stdout[-2000:]}\n{up.stderr[-3000:]}")
        stack = json.loads((self.stack_dir / "stack.json").read_text())
        self.state.update(study_storage=stack["study_storage"], secrets_file=stack["secrets_file"],
                          worker_secrets_file=stack["worker_secrets_file"])
        self._save()

        # One trial worker per worker host.
        worker_secrets = local_stack.read_env_file(Path(stack["worker_secrets_file"]))
        since = datetime.now(timezone.utc) - timedelta(seconds=2)
        procs = {}
        for host in hosts:
            entry, procs[entry["name"]] = self._start_worker(host, hosts, prefect_url, mlflow_url, worker_secrets)
            self.state["workers"].append(entry)
            self.state["pgids"].append(entry["pgid"])
            self._save()
        wait_state = {"api_url": prefect_url, "processes": self.state["workers"]}
        local_stack.wait_workers_online(wait_state, procs, since, timeout, worker_secrets["PREFECT_API_AUTH_STRING"])
        return self.state

    def _start_worker(self, host: Any, hosts: list, prefect_url: str, mlflow_url: str,
                      worker_secrets: dict[str, str]) -> tuple[dict, subprocess.Popen]:
        wdir = self.root / "hosts" / host.name
        for sub in ("prefect-home", "tmp"):
            (wdir / sub).mkdir(parents=True, exist_ok=True)
        name = f"{host.name}-trials-1"
        env = {k: os.environ[k] for k in INHERITED if k in os.environ}
        env.update(worker_secrets, HOME=str(wdir), TMPDIR=str(wdir / "tmp"), PWD=str(wdir),
                   PREFECT_API_URL=prefect_url, MLFLOW_TRACKING_URI=mlflow_url, PREFECT_HOME=str(wdir / "prefect-home"),
                   PREFECT_WORKER_QUERY_SECONDS=local_stack.TRIAL_WORKER_QUERY, PREFECT_CLI_PROMPT="false",
                   PREFECT_SERVER_ANALYTICS_ENABLED="false", PYTHONUNBUFFERED="1",
                   **{local_stack.WORKER_DIR_ENV: str(wdir)})
        hide = [self.orch_dir] + [self.root / "hosts" / h.name for h in hosts if h is not host]
        log = wdir / "worker.log"
        cmd = self.net.command(host, [local_stack.prefect_bin(), "worker", "start", "--pool", local_stack.TRIALS_POOL,
                                      "--type", "process", "--name", name, "--limit", "1"], hide=hide)
        proc = local_stack.spawn(cmd, env, log, cwd=wdir)
        return {"name": name, "role": "worker", "host": host.name, "ns": host.ns, "addr": host.addr,
                "pool": local_stack.TRIALS_POOL, "dir": str(wdir), "log": str(log), "pgid": proc.pid,
                "hidden": [str(h) for h in hide]}, proc

    def _save(self) -> None:
        (self.root / STATE_FILE).write_text(json.dumps(self.state, indent=2) + "\n")

    # ----------------------------------------------------------------------------------------------- down

    def down(self, drop_databases: bool = False) -> None:
        """Stop every process (workers, the orchestrator's stack, the proxy), remove every namespace and link."""
        down(self.root, drop_databases, self.dbs)


def orchestrator_env(state: dict) -> dict[str, str]:
    """The environment of a command on the orchestrator host: the stack's URLs and every secret (it opens the
    study on PostgreSQL)."""
    env = dict(os.environ, PREFECT_API_URL=state["api_url"], MLFLOW_TRACKING_URI=state["mlflow_url"],
               MNIST_ETC_STUDY_STORAGE=state["study_storage"], PWD=str(REPO),
               PREFECT_HOME=str(Path(state["stack_dir"]) / "home"))
    env.update(local_stack.read_env_file(Path(state["secrets_file"])))
    return env


def orchestrator_command(state: dict, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", state["orch"]["ns"], *argv]


def load_state(root: Path) -> dict:
    path = Path(root) / STATE_FILE
    if not path.exists():
        raise UserError(f"no multi-host stack is recorded in {path}; start one with 'up'.")
    return json.loads(path.read_text())


def down(root: Path, drop_databases: bool = False, dbs: Any = None) -> list[str]:
    """Stop everything `up` started in `root` and remove every namespace and link named mnetc-*. Returns the
    namespaces and links removed."""
    root = Path(root).resolve()
    path = root / STATE_FILE
    state = json.loads(path.read_text()) if path.exists() else {}
    groups = local_stack.tree_groups([w["pgid"] for w in state.get("workers", [])])
    local_stack.stop_groups(groups, 15.0)
    stack_dir = Path(state.get("stack_dir") or root / "orch" / "stack")
    if (stack_dir / "stack.json").exists():
        local_stack.down(stack_dir)
    if state.get("pg_proxy"):
        local_stack.stop_groups([state["pg_proxy"]["pgid"]], 5.0)
    removed = remove_leftovers(state.get("prefix", PREFIX))
    if drop_databases and (dbs or state.get("database_url")):
        (dbs or local_stack.Databases(state["database_url"])).drop_all()
    path.unlink(missing_ok=True)
    return removed


# --------------------------------------------------------------------------------------------------- CLI

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["up", "down", "sweep"])
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"state, logs and host directories "
                                                                   f"(default {DEFAULT_DIR})")
    ap.add_argument("--workers", type=int, default=2, help="worker hosts, one trial worker each (default 2)")
    ap.add_argument("--database-url", default=local_stack.URL_EXAMPLE,
                    help=f"PostgreSQL of the stack (default {local_stack.URL_EXAMPLE}); it stays on this namespace")
    ap.add_argument("--drop-databases", action="store_true", help="down: also drop the stack's databases and role")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []   # sweep: the arguments of 'mnist-etc sweep'
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    try:
        if args.command == "up":
            state = HostStack(args.dir, args.workers, args.database_url).up()
            print(f"orchestrator host {state['orch']['ns']}: Prefect {state['api_url']}, MLflow {state['mlflow_url']}; "
                  f"worker hosts {', '.join(w['ns'] + ' ' + w['addr'] for w in state['workers'])}; secrets in "
                  f"{state['secrets_file']} (0600).\nNext: {sys.argv[0]} sweep -- --space search_spaces/smoke.yaml")
        elif args.command == "down":
            removed = down(args.dir, args.drop_databases)
            print(f"removed {', '.join(removed)}" if removed else "no namespace or link was left")
        else:
            state = load_state(args.dir)
            argv = [str(Path(sys.executable).parent / "mnist-etc"), "sweep", "--runner", "deployment",
                    "--artifacts", str(Path(state["root"]) / "orch" / "artifacts"), *extra]
            return subprocess.run(orchestrator_command(state, argv), cwd=REPO, env=orchestrator_env(state)).returncode
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())


# ------------------------------------------------------------------------------------- checks (tests, benchmarks)

def api(state: dict, path: str, body: dict | None = None, server: str = "prefect") -> Any:
    """A request to the stack's Prefect API (POST with a JSON body) or MLflow REST API (GET, or POST with `body`),
    authenticated."""
    import base64
    import urllib.request

    values = local_stack.read_env_file(Path(state["secrets_file"]))
    if server == "prefect":
        req = urllib.request.Request(f"{state['api_url']}{path}", data=json.dumps(body or {}).encode(),
                                     headers=local_stack.api_headers(values["PREFECT_API_AUTH_STRING"]))
    else:
        creds = f"{values['MLFLOW_TRACKING_USERNAME']}:{values['MLFLOW_TRACKING_PASSWORD']}"
        headers = {"Authorization": "Basic " + base64.b64encode(creds.encode()).decode(),
                   "Content-Type": "application/json"}
        req = urllib.request.Request(f"{state['mlflow_url']}{path}", headers=headers,
                                     data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def trial_flow_runs(state: dict, study: str) -> list[dict]:
    runs = api(state, "/flow_runs/filter", {"flow_runs": {"name": {"like_": f"{study}-trial-"}}, "limit": 200})
    return [r for r in runs if r["name"].startswith(f"{study}-trial-")]


def where_trials_ran(state: dict, study: str) -> dict[str, str]:
    """Flow-run id -> the worker host whose directory the trial ran in (from the trial flow's own log line,
    'trial #N of study S in <dir>'), or '?' when no worker host's directory is named."""
    runs = trial_flow_runs(state, study)
    logs = api(state, "/logs/filter", {"logs": {"flow_run_id": {"any_": [r["id"] for r in runs]}}, "limit": 200})
    hosts = {w["dir"]: w["host"] for w in state["workers"]}
    found = {r["id"]: "?" for r in runs}
    for line in logs:
        msg = line.get("message", "")
        if f" of study {study} in " in msg:
            path = msg.split(f" of study {study} in ", 1)[1].split(":", 1)[0]
            found[line["flow_run_id"]] = next((h for d, h in hosts.items() if path.startswith(d + "/")), "?")
    return found


def secret_values(state: dict) -> dict[str, str]:
    values = local_stack.read_env_file(Path(state["secrets_file"]))
    values["PREFECT_API_AUTH_STRING"] = values["PREFECT_API_AUTH_STRING"].split(":", 1)[1]   # the password part
    values.pop("MLFLOW_TRACKING_USERNAME", None)   # a user name, not a secret
    return values


def find_secrets(state: dict, databases: list[str] | None = None) -> list[str]:
    """Where a secret of the stack shows up outside its own files: every file under the stack's root (logs,
    artifacts, worker directories, state), the Prefect flow runs' parameters and all their logs, the MLflow runs'
    params and tags, and a pg_dump of `databases` (the stack's three by default). Returns 'KEY in WHERE' lines."""
    import shutil

    values = secret_values(state)
    own = {Path(state["secrets_file"]).name, local_stack.WORKER_SECRETS_FILE, local_stack.MLFLOW_AUTH_FILE}
    found = []
    for path in Path(state["root"]).rglob("*"):
        if path.is_file() and path.name not in own:
            data = path.read_bytes()
            found += [f"{k} in {path}" for k, v in values.items() if v.encode() in data]
    runs = api(state, "/flow_runs/filter", {"limit": 200})
    texts = {"Prefect flow-run parameters": json.dumps([r.get("parameters") for r in runs]),
             "Prefect flow-run job variables": json.dumps([r.get("job_variables") for r in runs])}
    logs, offset = [], 0
    while offset < 20_000:   # bounded: at most 100 pages of 200
        page = api(state, "/logs/filter", {"limit": 200, "offset": offset})
        logs += [line.get("message", "") for line in page]
        offset += 200
        if len(page) < 200:
            break
    texts["Prefect logs"] = "\n".join(logs)
    experiments = api(state, "/api/2.0/mlflow/experiments/search?max_results=1000", server="mlflow")
    ids = [e["experiment_id"] for e in experiments.get("experiments", [])]
    mruns = api(state, "/api/2.0/mlflow/runs/search", {"experiment_ids": ids, "max_results": 1000},
                server="mlflow") if ids else {}
    texts["MLflow params and tags"] = json.dumps([r.get("data") for r in mruns.get("runs", [])])
    if shutil.which("pg_dump"):
        dbs = local_stack.Databases(state["database_url"])
        for name in databases or dbs.names():
            dump = subprocess.run(["pg_dump", "-h", dbs.host, "-p", str(dbs.port), "-U", dbs.url.username or "postgres",
                                   name], capture_output=True, text=True, timeout=300)
            texts[f"pg_dump of {name}"] = dump.stdout if dump.returncode == 0 else f"(pg_dump failed {dump.stderr})"
    for where, text in texts.items():
        found += [f"{k} in {where}" for k, v in values.items() if v in text]
    return found


def pg_proxy_peers(state: dict) -> tuple[dict, dict]:
    """(connections let through, connections refused) by client address, from the PostgreSQL proxy's log."""
    lines = [l for l in Path(state["pg_proxy"]["log"]).read_text().splitlines() if l.startswith("peers ")]
    if not lines:
        return {}, {}
    peers, refused = lines[-1][len("peers "):].split(" refused ")
    return json.loads(peers), json.loads(refused)
