"""Stand up (and tear down) mnist-etc's local Prefect stack: server, process work pool, deployments, worker.

    .venv/bin/python deployments/local_stack.py up [--port 4200] [--database-url postgresql+asyncpg://...]
    source artifacts/prefect/env.sh          # PREFECT_API_URL and PREFECT_HOME for this stack
    prefect deployment run 'privacy-audit/nightly' --watch
    .venv/bin/python deployments/local_stack.py down

Everything binds to 127.0.0.1. The server keeps its SQLite database in the stack's PREFECT_HOME unless a
PostgreSQL URL is given. Server and worker run in their own process groups, recorded in stack.json;
`down` stops both groups (and everything they started), so no orphan process remains.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mnist_etc.ports import free_ports, port_is_free

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DIR = REPO / "artifacts" / "prefect"
WORK_POOL = "mnist-etc"
HOST = "127.0.0.1"


def prefect_bin() -> str:
    return str(Path(sys.executable).parent / "prefect")


def stack_env(stack_dir: Path, port: int, database_url: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PREFECT_HOME=str(stack_dir / "home"), PREFECT_API_URL=f"http://{HOST}:{port}/api",
               PREFECT_SERVER_API_HOST=HOST, PREFECT_SERVER_API_PORT=str(port),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="true",
               PREFECT_CLI_PROMPT="false", PYTHONUNBUFFERED="1")
    if database_url:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    return env


def free_port() -> int:
    return free_ports(1, HOST)[0]


def wait_healthy(api_url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the Prefect server exited during start-up (code {proc.returncode}); last log "
                             f"lines:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the Prefect server did not answer {api_url}/health within {timeout:.0f} s; see {log}")


def spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        # A session of its own, so `down` can signal the whole group (uvicorn, worker's flow-run children).
        return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def run(cmd: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[1:4])} failed (exit {done.returncode}):\n{done.stdout[-3000:]}"
                         f"\n{done.stderr[-3000:]}")


def up(stack_dir: Path, port: int | None, database_url: str | None, deploy: bool = True,
       timeout: float = 120.0) -> dict:
    stack_dir.mkdir(parents=True, exist_ok=True)
    state_file = stack_dir / "stack.json"
    if state_file.exists() and any(alive(p) for p in json.loads(state_file.read_text())["pgids"]):
        raise SystemExit(f"a stack is already running ({state_file}); run 'down' first.")
    port = port or 4200
    if not port_is_free(port, HOST):
        raise SystemExit(f"port {port} on {HOST} is taken; pass --port with a free port (for example "
                         f"{free_port()}).")
    env = stack_env(stack_dir, port, database_url)
    server = spawn([prefect_bin(), "server", "start", "--host", HOST, "--port", str(port)], env,
                   stack_dir / "server.log")
    state = {"port": port, "api_url": env["PREFECT_API_URL"], "prefect_home": env["PREFECT_HOME"],
             "database_url": database_url, "pgids": [server.pid]}
    write_state(stack_dir, state)
    try:
        wait_healthy(env["PREFECT_API_URL"], server, stack_dir / "server.log", timeout)
        run([prefect_bin(), "work-pool", "create", WORK_POOL, "--type", "process", "--overwrite"], env)
        if deploy:
            run([prefect_bin(), "--no-prompt", "deploy", "--all"], env)
        worker = spawn([prefect_bin(), "worker", "start", "--pool", WORK_POOL, "--type", "process",
                        "--name", "local-worker"], env, stack_dir / "worker.log")
        state["pgids"].append(worker.pid)
        write_state(stack_dir, state)
    except BaseException:
        down(stack_dir)
        raise
    return state


def write_state(stack_dir: Path, state: dict) -> None:
    (stack_dir / "stack.json").write_text(json.dumps(state, indent=2) + "\n")
    (stack_dir / "env.sh").write_text(
        f"# source this file to talk to the local mnist-etc Prefect stack\n"
        f"export PREFECT_API_URL={state['api_url']}\nexport PREFECT_HOME={state['prefect_home']}\n")


def alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _reap(pgids: list[int]) -> None:
    """Collect the exit of group leaders this process started (tests call up() and down() in-process): an
    unreaped leader is a zombie, and a zombie still counts as a live process group."""
    for pgid in pgids:
        try:
            os.waitpid(pgid, os.WNOHANG)
        except ChildProcessError:
            pass


def down(stack_dir: Path, timeout: float = 20.0) -> list[int]:
    state_file = stack_dir / "stack.json"
    if not state_file.exists():
        return []
    pgids = json.loads(state_file.read_text())["pgids"]
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        for pgid in reversed(pgids):  # worker first, then the server it talks to
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(alive(p) for p in pgids):
            _reap(pgids)
            time.sleep(0.2)
        if not any(alive(p) for p in pgids):
            break
    _reap(pgids)
    state_file.unlink()
    return pgids


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["up", "down", "status"])
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"stack state, logs, PREFECT_HOME "
                                                                   f"(default {DEFAULT_DIR})")
    ap.add_argument("--port", type=int, default=None, help="Prefect API port on 127.0.0.1 (default 4200)")
    ap.add_argument("--database-url", default=None,
                    help="server database, e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/prefect "
                         "(default: SQLite in the stack's PREFECT_HOME)")
    ap.add_argument("--no-deploy", action="store_true", help="skip 'prefect deploy --all'")
    args = ap.parse_args()
    if args.command == "up":
        state = up(args.dir, args.port, args.database_url, deploy=not args.no_deploy)
        print(f"Prefect server {state['api_url']} (UI http://{HOST}:{state['port']}), work pool '{WORK_POOL}', "
              f"worker running; logs in {args.dir}.\nNext: source {args.dir / 'env.sh'} && "
              f"prefect deployment run 'privacy-audit/nightly' --watch")
    elif args.command == "down":
        stopped = down(args.dir)
        print(f"stopped process groups {stopped}" if stopped else "no stack was running")
    else:
        state_file = args.dir / "stack.json"
        if not state_file.exists():
            print("no stack is running")
            return 1
        state = json.loads(state_file.read_text())
        print(json.dumps({**state, "alive": [alive(p) for p in state["pgids"]]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
