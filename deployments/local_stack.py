"""Stand up (and tear down) mnist-etc's local Prefect stack: Prefect server, work pools, deployments, workers, and
(when asked) an MLflow tracking server.

    .venv/bin/python deployments/local_stack.py up [--port 4200]                  # the default stack, below
    .venv/bin/python deployments/local_stack.py up --workers 2 \\
        --database-url postgresql://postgres@127.0.0.1:5432/mnist_etc            # the scaled stack (make stack-up SCALE=2)
    source artifacts/prefect/env.sh          # PREFECT_API_URL, PREFECT_HOME (and MLFLOW_TRACKING_URI) of this stack
    prefect deployment run 'privacy-audit/nightly' --watch
    .venv/bin/python deployments/local_stack.py status
    .venv/bin/python deployments/local_stack.py down

What `up` starts (everything on 127.0.0.1 unless --host names another address of this machine):
- a Prefect server: SQLite in the stack's PREFECT_HOME, or PostgreSQL with --database-url;
- work pools `mnist-etc` and `mnist-etc-trials` (process type) and `prefect deploy --all` (prefect.yaml);
- worker `local-worker` on `mnist-etc`;
- with --workers N: N workers `trials-1`..`trials-N` on `mnist-etc-trials`, one flow run (one trial) at a time each,
  and an MLflow tracking server with proxied artifacts (trials send their files there: no shared disk);
- with --mlflow (implied by --workers and --database-url): that MLflow server, on SQLite in the stack directory
  unless --database-url is given.

--database-url postgresql://USER@HOST:PORT/NAME names the stack's PostgreSQL: database NAME is left for the Optuna
study (the sweep's --storage, exported as MNIST_ETC_STUDY_STORAGE), Prefect uses NAME_prefect and MLflow NAME_mlflow;
the three are created when missing.

Off loopback (--host or --mlflow-host not 127.0.0.1) authentication is on: Prefect's API auth string, MLflow's
basic-auth app, and with --database-url a PostgreSQL login role NAME_stack with a password; the generated secrets go
to <dir>/secrets.env (everything; env.sh sources it) and <dir>/worker-secrets.env (what a worker machine needs), both
0600 (docs/scale-out.md, "Authentication").

Every worker runs in its own directory, <dir>/workers/<name>/ (its working directory and $MNIST_ETC_WORKER_DIR, which
its flow runs inherit), with its own PREFECT_HOME there. Each server and worker is the leader of its own process
group, recorded in stack.json with its name; Prefect starts each flow run in a session of its own, so `down` also
stops the sessions of every worker's descendants: workers (and their flow runs) first, then MLflow, then Prefect.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from mnist_etc.errors import UserError
from mnist_etc.ports import free_ports, port_is_free
from mnist_etc.sweep.transport import STUDY_STORAGE_ENV, WORKER_DIR_ENV

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DIR = REPO / "artifacts" / "prefect"
WORK_POOL = "mnist-etc"
TRIALS_POOL = "mnist-etc-trials"
MAIN_WORKER = "local-worker"
HOST = "127.0.0.1"
DEFAULT_PORT = 4200
POSTGRES_DRIVERS = ("postgresql", "postgres", "postgresql+asyncpg", "postgresql+psycopg2")
URL_EXAMPLE = "postgresql://postgres@127.0.0.1:5432/mnist_etc"
# Seconds between a trial worker's polls for work (Prefect's default is 10): a trial waits half of it on average
# before it starts (benchmarks/bench_scale_out.py); 100 workers at 2 s are 50 polls/s on the Prefect API.
TRIAL_WORKER_QUERY = "2"
# Roles in the order `down` stops them.
STOP_ORDER = ("worker", "mlflow", "prefect")
# Off loopback the stack authenticates (docs/scale-out.md, "Authentication"): generated secrets in two 0600 files.
SECRETS_FILE = "secrets.env"                 # the orchestrator machine's: Prefect, MLflow and PostgreSQL
WORKER_SECRETS_FILE = "worker-secrets.env"   # what a worker machine gets: Prefect and MLflow credentials only
MLFLOW_AUTH_FILE = "mlflow-auth.ini"         # MLflow's basic-auth app configuration (MLFLOW_AUTH_CONFIG_PATH)
PREFECT_USER = "mnist-etc"
MLFLOW_USER = "mnist-etc"
CLIENT_SECRET_KEYS = ("PREFECT_API_AUTH_STRING", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def prefect_bin() -> str:
    return str(Path(sys.executable).parent / "prefect")


def mlflow_bin() -> str:
    return str(Path(sys.executable).parent / "mlflow")


def free_port() -> int:
    return free_ports(1, HOST)[0]


# ----------------------------------------------------------------------------------------------- input

class Databases:
    """The stack's PostgreSQL databases, derived from one --database-url: NAME (the Optuna study), NAME_prefect,
    NAME_mlflow. `label` names the server (host:port) without user or password, for messages."""

    def __init__(self, url: str) -> None:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            parsed = make_url(url)
        except ArgumentError:
            parsed = None
        if parsed is None or parsed.drivername not in POSTGRES_DRIVERS or not parsed.database:
            shown = parsed.render_as_string(hide_password=True) if parsed is not None else url
            raise UserError(f"--database-url {shown!r} is not a PostgreSQL URL with a database name; use one like "
                            f"{URL_EXAMPLE}.")
        self.url = parsed.set(drivername="postgresql")
        self.host = parsed.host or "localhost"
        self.port = parsed.port or 5432
        self.label = f"{self.host}:{self.port}"
        self.name = parsed.database

    def _url(self, driver: str, database: str) -> str:
        return self.url.set(drivername=driver, database=database).render_as_string(hide_password=False)

    @property
    def study(self) -> str:
        return self._url("postgresql", self.name)

    @property
    def prefect(self) -> str:
        return self._url("postgresql+asyncpg", f"{self.name}_prefect")

    @property
    def mlflow(self) -> str:   # SQLAlchemy 2.1's default PostgreSQL driver is psycopg 3; the venv ships psycopg2
        return self._url("postgresql+psycopg2", f"{self.name}_mlflow")

    def names(self) -> list[str]:
        return [self.name, f"{self.name}_prefect", f"{self.name}_mlflow"]

    @property
    def role(self) -> str:
        """The login role an authenticated stack's servers and study use (password in PGPASSWORD, never in a URL)."""
        return f"{self.name}_stack"

    def as_role(self, role: str) -> "Databases":
        """The same databases, reached as `role` with no password in the URL (libpq and asyncpg read PGPASSWORD)."""
        return Databases(self.url.set(username=role, password=None).render_as_string(hide_password=False))

    def ensure_role(self, role: str, password: str) -> None:
        """Login role `role` with `password`, owner of the stack's three databases (create_missing() first)."""
        import psycopg2
        from psycopg2 import sql

        con = self._connect()
        con.autocommit = True
        try:
            with con.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                verb = "ALTER" if cur.fetchone() else "CREATE"
                cur.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(role)), (password,))
                for name in self.names():
                    cur.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(name),
                                                                                sql.Identifier(role)))
        except psycopg2.Error as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"could not create the stack's login role {role} on PostgreSQL at {self.label} "
                            f"({reason}); use a --database-url role that may create roles.") from None
        finally:
            con.close()

    def _connect(self) -> Any:
        import psycopg2

        u = self.url
        return psycopg2.connect(host=self.host, port=self.port, user=u.username, password=u.password,
                                dbname="postgres", connect_timeout=5, application_name="mnist-etc local_stack")

    def check_reachable(self) -> None:
        import psycopg2

        try:
            self._connect().close()
        except psycopg2.OperationalError as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"PostgreSQL at {self.label} (--database-url) cannot be reached ({reason}); start it "
                            f"or pass the URL of a running server, like {URL_EXAMPLE}.") from None

    def create_missing(self) -> list[str]:
        import psycopg2

        con = self._connect()
        con.autocommit = True
        created = []
        try:
            with con.cursor() as cur:
                for name in self.names():
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                    if cur.fetchone() is None:
                        cur.execute(f'CREATE DATABASE "{name}"')
                        created.append(name)
        except psycopg2.Error as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"could not create the stack's databases {', '.join(self.names())} on PostgreSQL at "
                            f"{self.label} ({reason}); create them yourself or use a role that may.") from None
        finally:
            con.close()
        return created


    def drop_all(self) -> None:
        """Drop the three databases (throwaway stacks: benchmarks, tests), closing their connections."""
        con = self._connect()
        con.autocommit = True
        try:
            with con.cursor() as cur:
                for name in self.names():
                    cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                cur.execute(f'DROP ROLE IF EXISTS "{self.role}"')
        finally:
            con.close()


def check_workers(workers: int | None) -> None:
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise UserError(f"--workers {workers} is not a number of trial workers; pass 1 or more (or leave it out for "
                        f"the default stack, which has none).")


def check_host(host: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, 0))
        except OSError:
            raise UserError(f"--host {host!r} is not an IPv4 address of this machine; pass 127.0.0.1 or one of its "
                            f"private interface addresses (ip -4 addr).") from None


def check_port(port: int, host: str, option: str) -> None:
    if not 0 < port < 65536:
        raise UserError(f"{option} {port} is not a TCP port; pass one in 1..65535.")
    if not port_is_free(port, host):
        raise UserError(f"port {port} on {host} ({option}) is taken; pass {option} with a free port (for example "
                        f"{free_ports(1, host)[0]}).")


# ----------------------------------------------------------------------------------------------- secrets

def auth_needed(*hosts: str) -> bool:
    """Authentication is on whenever a server binds anything but 127.0.0.1."""
    return any(h != HOST for h in hosts)


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only (0600 from creation: never readable by others)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE (optionally `export KEY=VALUE`) lines of a secrets file; comments and blank lines skipped."""
    values = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.removeprefix("export ").split("=", 1)
            values[key.strip()] = value.strip().strip("'\"")
    return values


def stack_secrets(stack_dir: Path, pg_role: str | None) -> dict[str, str]:
    """The stack's secrets: read from <dir>/secrets.env when it exists (a restarted stack keeps them, so workers on
    other machines keep working), else generated and written there and to worker-secrets.env, both 0600."""
    path = stack_dir / SECRETS_FILE
    values = read_env_file(path) if path.exists() else {}
    if not all(values.get(k) for k in CLIENT_SECRET_KEYS):
        values = {"PREFECT_API_AUTH_STRING": f"{PREFECT_USER}:{secrets.token_urlsafe(24)}",
                  "MLFLOW_TRACKING_USERNAME": MLFLOW_USER, "MLFLOW_TRACKING_PASSWORD": secrets.token_urlsafe(24)}
    if not values.get("MLFLOW_FLASK_SERVER_SECRET_KEY"):   # the MLflow server's CSRF key (its basic-auth app)
        values["MLFLOW_FLASK_SERVER_SECRET_KEY"] = secrets.token_urlsafe(32)
    if pg_role and not values.get("PGPASSWORD"):
        values["PGPASSWORD"] = secrets.token_urlsafe(24)
    head = "# mnist-etc stack secrets (deployments/local_stack.py); keep private: mode 0600\n"
    _write_private(path, head + "".join(f"export {k}={v}\n" for k, v in values.items()))
    _write_private(stack_dir / WORKER_SECRETS_FILE,
                   "# what a trial worker needs to talk to the stack (copy it to the worker machine, mode 0600)\n"
                   + "".join(f"export {k}={values[k]}\n" for k in CLIENT_SECRET_KEYS))
    return values


def client_secrets(values: dict[str, str] | None) -> dict[str, str]:
    """The credentials a client or worker of the stack needs (no PostgreSQL password)."""
    return {k: values[k] for k in CLIENT_SECRET_KEYS} if values else {}


def write_mlflow_auth_config(stack_dir: Path, values: dict[str, str]) -> Path:
    """MLflow's basic-auth app configuration: its user store in <dir>/mlflow-auth.db, the stack's user as admin (MLflow
    creates it on first start), nobody else allowed anything."""
    path = stack_dir / MLFLOW_AUTH_FILE
    _write_private(path, "[mlflow]\n"
                         "default_permission = NO_PERMISSIONS\n"
                         f"database_uri = sqlite:///{stack_dir / 'mlflow-auth.db'}\n"
                         f"admin_username = {values['MLFLOW_TRACKING_USERNAME']}\n"
                         f"admin_password = {values['MLFLOW_TRACKING_PASSWORD']}\n"
                         "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    return path


def api_headers(auth: str | None = None) -> dict[str, str]:
    """Headers of a request to the Prefect API: JSON, and basic auth when the stack has an auth string (`auth`, else
    PREFECT_API_AUTH_STRING of this process)."""
    auth = auth or os.environ.get("PREFECT_API_AUTH_STRING")
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    return headers


# ----------------------------------------------------------------------------------------------- processes

def base_env(stack_dir: Path, api_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PREFECT_SERVER_DATABASE_CONNECTION_URL", None)
    env.update(PREFECT_HOME=str(stack_dir / "home"), PREFECT_API_URL=api_url,
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_CLI_PROMPT="false", PYTHONUNBUFFERED="1",
               # prefect.yaml's pull step is `set_working_directory: {{ $PWD }}`, templated by `prefect deploy` from
               # its environment (not its working directory): the deployments must record the repository even when
               # `up` is run from elsewhere.
               PWD=str(REPO))
    return env


def stack_env(stack_dir: Path, port: int, database_url: str | None = None, host: str = HOST) -> dict[str, str]:
    """The environment of the Prefect server and of the `prefect` commands run against it."""
    env = base_env(stack_dir, f"http://{host}:{port}/api")
    env.update(PREFECT_SERVER_API_HOST=host, PREFECT_SERVER_API_PORT=str(port), PREFECT_UI_ENABLED="true")
    if database_url:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    return env


def spawn(cmd: list[str], env: dict[str, str], log: Path, cwd: Path = REPO) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        # A session of its own, so `down` can signal the whole group (uvicorn and gunicorn children).
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def run(*cmds: list[str], env: dict[str, str]) -> None:
    """Run the commands side by side (each `prefect` command spends seconds importing); fail on the first error."""
    running = [(cmd, subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True)) for cmd in cmds]
    outputs = [proc.communicate() for _, proc in running]   # all of them end before any failure is raised
    for (cmd, proc), (out, err) in zip(running, outputs):
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd[1:4])} failed (exit {proc.returncode}):\n{out[-3000:]}\n{err[-3000:]}")


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float, what: str = "the Prefect server"
                 ) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited during start-up (code {proc.returncode}); last log lines:\n"
                             + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{what} did not answer {url} within {timeout:.0f} s; see {log}")


def online_workers(api_url: str, pool: str, since: datetime | None = None, auth: str | None = None) -> set[str]:
    """Names of the pool's ONLINE workers (with a heartbeat after `since`: a restarted stack on the same database
    still lists the previous workers of the same names as ONLINE for a while)."""
    req = urllib.request.Request(f"{api_url}/work_pools/{pool}/workers/filter", data=b"{}",
                                 headers=api_headers(auth))
    with urllib.request.urlopen(req, timeout=10) as r:
        workers = json.loads(r.read())
    return {w["name"] for w in workers if w.get("status") == "ONLINE"
            and (since is None or datetime.fromisoformat(w["last_heartbeat_time"]) >= since)}


def wait_workers_online(state: dict, procs: dict[str, subprocess.Popen], since: datetime, timeout: float,
                        auth: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    pending = {p["name"]: p for p in state["processes"] if p["role"] == "worker"}
    while pending:
        for name, p in pending.items():
            if procs[name].poll() is not None:
                raise SystemExit(f"worker {name} exited during start-up (code {procs[name].returncode}); last log "
                                 f"lines:\n" + "\n".join(Path(p["log"]).read_text(errors="replace")
                                                         .splitlines()[-15:]))
        for pool in {p["pool"] for p in pending.values()}:
            try:
                for name in online_workers(state["api_url"], pool, since, auth):
                    pending.pop(name, None)
            except OSError:
                pass
        if not pending:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"workers {', '.join(pending)} did not come ONLINE within {timeout:.0f} s; see "
                             f"{', '.join(p['log'] for p in pending.values())}")
        time.sleep(1.0)


ZOMBIE_AUTOMATION = "mnist-etc: crash flow runs that stopped their heartbeat"
ZOMBIE_SECONDS = 90   # three missed beats at prefect.yaml's PREFECT_FLOWS_HEARTBEAT_FREQUENCY of 30 s


def ensure_zombie_automation(api_url: str, auth: str | None = None) -> bool:
    """Prefect's "detect zombie flows" automation (docs.prefect.io/v3/advanced/detect-zombie-flows): a flow run that
    sent a heartbeat and then nothing (no heartbeat, no final state) for ZOMBIE_SECONDS is set CRASHED, so a flow
    run whose process or machine died (a killed sweep, a lost worker's trial) does not stay RUNNING in the UI.
    Created once per server database; returns whether it was created now."""
    from datetime import timedelta

    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    def call(path: str, body: dict) -> Any:
        req = urllib.request.Request(f"{api_url}{path}", data=json.dumps(body).encode(), headers=api_headers(auth))
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"null")

    if any(a.get("name") == ZOMBIE_AUTOMATION for a in call("/automations/filter", {})):
        return False
    final = {f"prefect.flow-run.{s}" for s in ("Completed", "Failed", "Cancelled", "Crashed")}
    automation = AutomationCore(
        name=ZOMBIE_AUTOMATION,
        description="A flow run that stopped sending heartbeats (its process or machine died) is marked Crashed.",
        trigger=EventTrigger(after={"prefect.flow-run.heartbeat"}, expect={"prefect.flow-run.heartbeat"} | final,
                             match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
                             for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
                             within=timedelta(seconds=ZOMBIE_SECONDS)),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, message=(
            f"no heartbeat for {ZOMBIE_SECONDS} s: its process or machine stopped (automation "
            f"'{ZOMBIE_AUTOMATION}')"))])
    call("/automations/", automation.model_dump(mode="json"))
    return True


def start_worker(stack_dir: Path, env: dict[str, str], name: str, pool: str, limit: int | None) -> tuple[dict, Any]:
    wdir = stack_dir / "workers" / name
    wdir.mkdir(parents=True, exist_ok=True)
    # Its own PREFECT_HOME too: nothing of a worker lives in a folder another worker shares. Its flow runs inherit
    # this environment (prefect/workers/process.py), MNIST_ETC_WORKER_DIR included.
    wenv = dict(env, PREFECT_HOME=str(wdir / "prefect-home"), PWD=str(wdir), **{WORKER_DIR_ENV: str(wdir)})
    if pool == TRIALS_POOL:
        wenv["PREFECT_WORKER_QUERY_SECONDS"] = TRIAL_WORKER_QUERY
        wenv.pop(STUDY_STORAGE_ENV, None)   # trials never open the study
    cmd = [prefect_bin(), "worker", "start", "--pool", pool, "--type", "process", "--name", name]
    if limit:
        cmd += ["--limit", str(limit)]
    log = wdir / "worker.log"
    proc = spawn(cmd, wenv, log, cwd=wdir)
    return {"name": name, "role": "worker", "pool": pool, "dir": str(wdir), "log": str(log), "pgid": proc.pid}, proc


def start_mlflow(stack_dir: Path, backend_uri: str, host: str, port: int, values: dict[str, str] | None = None
                 ) -> tuple[dict, subprocess.Popen]:
    """The MLflow server; with `values` (the stack's secrets) its basic-auth app and PGPASSWORD for its backend."""
    artifacts = stack_dir / "mlflow-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    log = stack_dir / "mlflow.log"
    # No job execution (MLflow's huey consumers for GenAI scoring jobs, unused here): measured on this machine it
    # is 10 processes and ~1.1 GB RSS instead of 2 and ~0.5 GB, and a slower stop.
    env = dict(os.environ, PYTHONUNBUFFERED="1", MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    env.pop("MLFLOW_TRACKING_URI", None)
    auth = []
    if values:
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(write_mlflow_auth_config(stack_dir, values))
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = values["MLFLOW_FLASK_SERVER_SECRET_KEY"]
        if values.get("PGPASSWORD"):
            env["PGPASSWORD"] = values["PGPASSWORD"]
        auth = ["--app-name", "basic-auth"]
    # One web worker: the server is I/O bound here and each worker costs memory.
    proc = spawn([mlflow_bin(), "server", "--backend-store-uri", backend_uri, "--serve-artifacts",
                  "--artifacts-destination", str(artifacts), "--host", host, "--port", str(port), "--workers", "1",
                  *auth], env, log, cwd=stack_dir)
    return {"name": "mlflow-server", "role": "mlflow", "url": f"http://{host}:{port}", "log": str(log),
            "pgid": proc.pid}, proc


def up(stack_dir: Path, port: int | None, database_url: str | None, deploy: bool = True, timeout: float = 120.0,
       workers: int | None = None, mlflow: bool = False, mlflow_port: int | None = None, host: str = HOST,
       mlflow_host: str | None = None) -> dict:
    """Start the stack; bad input raises UserError before anything starts. Returns the state of stack.json.
    Off loopback (`host` or `mlflow_host` not 127.0.0.1) authentication is on: see stack_secrets()."""
    stack_dir = Path(stack_dir).resolve()
    check_workers(workers)
    dbs = Databases(database_url) if database_url else None
    state_file = stack_dir / "stack.json"
    if state_file.exists() and any(alive(p) for p in json.loads(state_file.read_text())["pgids"]):
        raise UserError(f"a stack is already running ({state_file}); run 'down' first.")
    check_host(host)
    mlflow_host = mlflow_host or host
    if mlflow_host != host:
        check_host(mlflow_host)
    port = port or DEFAULT_PORT
    check_port(port, host, "--port")
    with_mlflow = bool(mlflow or workers or dbs)
    if with_mlflow:
        if mlflow_port is None:
            mlflow_port = next(p for p in free_ports(2, mlflow_host) if p != port)
        else:
            check_port(mlflow_port, mlflow_host, "--mlflow-port")
            if mlflow_port == port and mlflow_host == host:
                raise UserError(f"--mlflow-port {mlflow_port} is the Prefect --port; pass another one.")
    auth = auth_needed(host, mlflow_host if with_mlflow else host)
    if dbs:
        dbs.check_reachable()
        dbs.create_missing()

    stack_dir.mkdir(parents=True, exist_ok=True)
    values = stack_secrets(stack_dir, dbs.role if dbs else None) if auth else None
    if dbs and auth:   # the servers and the study log in as the stack's role, its password in PGPASSWORD
        dbs.ensure_role(dbs.role, values["PGPASSWORD"])
        dbs = dbs.as_role(dbs.role)
    env = stack_env(stack_dir, port, dbs.prefect if dbs else None, host)
    if values:
        env.update(client_secrets(values), PREFECT_SERVER_API_AUTH_STRING=values["PREFECT_API_AUTH_STRING"])
        if values.get("PGPASSWORD"):
            env["PGPASSWORD"] = values["PGPASSWORD"]
    procs: dict[str, subprocess.Popen] = {}
    server = spawn([prefect_bin(), "server", "start", "--host", host, "--port", str(port)], env,
                   stack_dir / "server.log")
    procs["prefect-server"] = server
    state: dict[str, Any] = {
        "port": port, "api_url": env["PREFECT_API_URL"], "prefect_home": env["PREFECT_HOME"], "host": host,
        "database_url": database_url, "prefect_database": dbs.prefect if dbs else "sqlite (PREFECT_HOME)",
        "study_storage": dbs.study if dbs else None, "mlflow_url": None, "mlflow_backend": None,
        "auth": bool(values), "secrets_file": str(stack_dir / SECRETS_FILE) if values else None,
        "worker_secrets_file": str(stack_dir / WORKER_SECRETS_FILE) if values else None,
        "processes": [{"name": "prefect-server", "role": "prefect", "url": env["PREFECT_API_URL"],
                       "log": str(stack_dir / "server.log"), "pgid": server.pid}]}
    write_state(stack_dir, state)
    try:
        if with_mlflow:
            backend = dbs.mlflow if dbs else f"sqlite:///{stack_dir / 'mlflow.db'}"
            entry, procs["mlflow-server"] = start_mlflow(stack_dir, backend, mlflow_host, mlflow_port, values)
            state["processes"].append(entry)
            state.update(mlflow_url=entry["url"], mlflow_backend=backend)
            write_state(stack_dir, state)
        wait_healthy(f"{env['PREFECT_API_URL']}/health", server, stack_dir / "server.log", timeout)
        run(*([prefect_bin(), "work-pool", "create", pool, "--type", "process", "--overwrite"]
              for pool in (WORK_POOL, TRIALS_POOL)), env=env)
        ensure_zombie_automation(env["PREFECT_API_URL"], env.get("PREFECT_API_AUTH_STRING"))
        if with_mlflow:   # the workers get its URL
            wait_healthy(f"{state['mlflow_url']}/health", procs["mlflow-server"], stack_dir / "mlflow.log", timeout,
                         "the MLflow server")
        worker_env = base_env(stack_dir, env["PREFECT_API_URL"])
        worker_env.update(client_secrets(values))
        if state["mlflow_url"]:
            worker_env["MLFLOW_TRACKING_URI"] = state["mlflow_url"]
        if dbs:   # deployment sweep/scaled reads it (flows/sweep.py)
            worker_env[STUDY_STORAGE_ENV] = dbs.study
        # One trial at a time per trials worker: a worker is one trial slot, and the next trial goes to an idle one.
        planned = [(MAIN_WORKER, WORK_POOL, None)] + [(f"trials-{i}", TRIALS_POOL, 1)
                                                       for i in range(1, (workers or 0) + 1)]
        since = datetime.now(timezone.utc) - timedelta(seconds=2)
        for name, pool, limit in planned:   # started before the deploy, which they do not need: they start meanwhile
            # Only the sweep's worker (the orchestrator) opens the study: only it gets the PostgreSQL password.
            wenv = dict(worker_env, PGPASSWORD=values["PGPASSWORD"]) if (
                pool == WORK_POOL and values and values.get("PGPASSWORD")) else worker_env
            entry, procs[name] = start_worker(stack_dir, wenv, name, pool, limit)
            state["processes"].append(entry)
            write_state(stack_dir, state)
        if deploy:
            run([prefect_bin(), "--no-prompt", "deploy", "--all"], env=env)
        wait_workers_online(state, procs, since, timeout, env.get("PREFECT_API_AUTH_STRING"))
    except BaseException:
        down(stack_dir)
        raise
    return state


def write_state(stack_dir: Path, state: dict) -> None:
    state["pgids"] = [p["pgid"] for p in state["processes"]]
    (stack_dir / "stack.json").write_text(json.dumps(state, indent=2) + "\n")
    lines = ["# source this file to talk to the local mnist-etc stack (deployments/local_stack.py)",
             f"export PREFECT_API_URL={state['api_url']}", f"export PREFECT_HOME={state['prefect_home']}"]
    if state.get("mlflow_url"):
        lines.append(f"export MLFLOW_TRACKING_URI={state['mlflow_url']}")
    if state.get("study_storage"):
        lines.append(f"export {STUDY_STORAGE_ENV}={state['study_storage']}   # the sweep's --storage")
    if state.get("secrets_file"):   # the credentials stay in their 0600 file; env.sh holds none
        lines.append(f". {state['secrets_file']}   # PREFECT_API_AUTH_STRING, MLFLOW_TRACKING_USERNAME/PASSWORD, "
                     f"PGPASSWORD")
    (stack_dir / "env.sh").write_text("\n".join(lines) + "\n")


# ----------------------------------------------------------------------------------------------- stopping

def alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every process, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()   # the command name (in parentheses) may hold spaces
        table[int(entry)] = (int(fields[1]), int(fields[2]))
    return table


def tree_groups(pgids: list[int]) -> list[int]:
    """The process groups of every member of `pgids` and of all their descendants: a Prefect worker starts each
    flow run in a session (and group) of its own, out of reach of a signal to the worker's group."""
    table = process_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    todo = [pid for pid, (_, pgid) in table.items() if pgid in pgids]
    seen: set[int] = set()
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children.get(pid, ()))
    groups = list(pgids)
    for pid in sorted(seen):
        if table[pid][1] not in groups:
            groups.append(table[pid][1])
    return groups


def signal_groups(pgids: list[int], sig: int) -> None:
    for pgid in pgids:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass


def _reap(pgids: list[int]) -> None:
    """Collect the exit of group leaders this process started (tests call up() and down() in-process): an
    unreaped leader is a zombie, and a zombie still counts as a live process group."""
    for pgid in pgids:
        try:
            os.waitpid(pgid, os.WNOHANG)
        except ChildProcessError:
            pass


def stop_groups(pgids: list[int], timeout: float) -> None:
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        signal_groups(pgids, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(alive(p) for p in pgids):
            _reap(pgids)
            time.sleep(0.2)
        _reap(pgids)
        if not any(alive(p) for p in pgids):
            return


def kill_worker(stack_dir: Path, name: str, sig: int = signal.SIGKILL) -> list[int]:
    """Signal worker `name` and the flow runs it started, as the loss of its machine would: its process group
    and the groups of all its descendants. Returns those groups."""
    state = json.loads((Path(stack_dir) / "stack.json").read_text())
    entry = next((p for p in state["processes"] if p["name"] == name and p["role"] == "worker"), None)
    if entry is None:
        raise UserError(f"no worker named {name!r} in {stack_dir}; the workers are "
                        f"{', '.join(p['name'] for p in state['processes'] if p['role'] == 'worker')}.")
    groups = tree_groups([entry["pgid"]])
    signal_groups(groups, sig)
    return groups


def down(stack_dir: Path, timeout: float = 20.0) -> list[int]:
    """Stop the stack: the workers with every flow run they started, then MLflow, then Prefect. Returns every
    process group signalled."""
    state_file = Path(stack_dir) / "stack.json"
    if not state_file.exists():
        return []
    state = json.loads(state_file.read_text())
    processes = state.get("processes") or [{"role": "worker", "pgid": p} for p in state["pgids"]]
    stopped: list[int] = []
    for role in STOP_ORDER:
        groups = tree_groups([p["pgid"] for p in processes if p["role"] == role])
        stop_groups(groups, timeout)
        stopped += groups
    state_file.unlink()
    return stopped


# ----------------------------------------------------------------------------------------------- CLI

def status(stack_dir: Path) -> int:
    state_file = stack_dir / "stack.json"
    if not state_file.exists():
        print(f"no stack is running ({state_file} does not exist)")
        return 1
    state = json.loads(state_file.read_text())
    print(f"Prefect API {state['api_url']} (database {redact(state.get('prefect_database'))})")
    if state.get("mlflow_url"):
        print(f"MLflow      {state['mlflow_url']} (backend {redact(state.get('mlflow_backend'))})")
    if state.get("study_storage"):
        print(f"study       {redact(state['study_storage'])} (the sweep's --storage)")
    down_count = 0
    for p in state.get("processes", []):
        up_now = alive(p["pgid"])
        down_count += not up_now
        where = f"pool {p['pool']:<17} dir {p['dir']}" if p["role"] == "worker" else p.get("url", "")
        print(f"  {p['name']:<15} pgid {p['pgid']:<8} {'running' if up_now else 'STOPPED':<8} {where}")
    return 2 if down_count else 0


def redact(url: str | None) -> str:
    if not url or "://" not in url:
        return str(url)
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["up", "down", "status"])
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"stack state, logs, PREFECT_HOME, worker "
                                                                   f"directories (default {DEFAULT_DIR})")
    ap.add_argument("--port", type=int, default=None, help=f"Prefect API port (default {DEFAULT_PORT})")
    ap.add_argument("--database-url", default=None,
                    help=f"the stack's PostgreSQL, e.g. {URL_EXAMPLE}: Prefect uses database NAME_prefect, MLflow "
                         f"NAME_mlflow, the study NAME (created when missing); default: SQLite files in --dir")
    ap.add_argument("--workers", type=int, default=None,
                    help=f"trial workers on work pool {TRIALS_POOL} (trials-1..N, one trial at a time each); "
                         f"implies --mlflow (default: none)")
    ap.add_argument("--mlflow", action="store_true",
                    help="start an MLflow tracking server with proxied artifacts (SQLite in --dir unless "
                         "--database-url); implied by --workers and --database-url")
    ap.add_argument("--mlflow-port", type=int, default=None, help="MLflow server port (default: a free one)")
    ap.add_argument("--host", default=HOST,
                    help=f"address the Prefect and MLflow servers bind to (default {HOST}); a private interface "
                         f"address lets workers on other machines in, and switches authentication on: generated "
                         f"secrets in <dir>/{SECRETS_FILE} and <dir>/{WORKER_SECRETS_FILE} (docs/scale-out.md)")
    ap.add_argument("--mlflow-host", default=None,
                    help="address the MLflow server binds to (default: --host); off 127.0.0.1 authentication is on")
    ap.add_argument("--no-deploy", action="store_true", help="skip 'prefect deploy --all'")
    args = ap.parse_args()
    try:
        if args.command == "up":
            state = up(args.dir, args.port, args.database_url, deploy=not args.no_deploy, workers=args.workers,
                       mlflow=args.mlflow, mlflow_port=args.mlflow_port, host=args.host, mlflow_host=args.mlflow_host)
            workers = [p["name"] for p in state["processes"] if p["role"] == "worker"]
            print(f"Prefect server {state['api_url']} (UI http://{state['host']}:{state['port']}, database "
                  f"{redact(state['prefect_database'])}), work pools '{WORK_POOL}' and '{TRIALS_POOL}', workers "
                  f"{', '.join(workers)}" + (f", MLflow server {state['mlflow_url']}" if state["mlflow_url"] else "")
                  + f"; logs in {args.dir}.\nNext: source {args.dir / 'env.sh'} && prefect deployment run "
                  + ("'sweep/scaled' --watch" if args.workers else "'privacy-audit/nightly' --watch"))
        elif args.command == "down":
            stopped = down(args.dir)
            print(f"stopped process groups {stopped}" if stopped else "no stack was running")
        else:
            return status(args.dir)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
