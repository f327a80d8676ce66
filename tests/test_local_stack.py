"""deployments/local_stack.py: the scaled stack for real (`up --workers 2 --database-url postgresql://...`: Prefect and
MLflow servers on a throwaway PostgreSQL database, both work pools, two trial workers each in its own directory,
`down` leaving no process), and the bad-input sentences, which come before anything starts (no servers)."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from mnist_etc.ports import free_ports
from tests.conftest import REPO, http_json, local_stack

SCRIPT = REPO / "deployments" / "local_stack.py"


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


# ------------------------------------------------------------------------------------- no servers needed

@pytest.fixture
def busy_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((local_stack.HOST, 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize("case", ["workers-zero", "workers-negative", "busy-port", "unreachable-postgres",
                                  "not-postgres"])
def test_bad_input_gets_one_sentence_before_anything_starts(case, tmp_path, busy_port):
    closed = free_ports(1)[0]   # nothing listens there
    args, expected = {
        "workers-zero": (["--workers", "0"], ["--workers 0 ", "pass 1 or more"]),
        "workers-negative": (["--workers", "-2"], ["--workers -2 ", "pass 1 or more"]),
        "busy-port": (["--port", str(busy_port)], [f"port {busy_port} on 127.0.0.1 (--port) is taken"]),
        "unreachable-postgres": (["--workers", "1", "--database-url",
                                  f"postgresql://postgres:s3cret@127.0.0.1:{closed}/mnist_etc"],
                                 [f"PostgreSQL at 127.0.0.1:{closed} (--database-url) cannot be reached"]),
        "not-postgres": (["--database-url", "sqlite:///x.db"], ["'sqlite:///x.db' is not a PostgreSQL URL"]),
    }[case]
    stack_dir = tmp_path / "stack"
    done = cli("up", "--dir", str(stack_dir), *args)
    message = done.stderr.strip()
    assert done.returncode == 2, done.stdout + done.stderr
    assert message.startswith("error: ") and "\n" not in message and "Traceback" not in message, message
    assert message.endswith(".") and message[:-1].count(". ") == 0, f"not one sentence: {message}"
    for text in expected:
        assert text in message, message
    assert "s3cret" not in message
    assert not (stack_dir / "stack.json").exists() and not (stack_dir / "server.log").exists()


# ------------------------------------------------------------------------------------- the scaled stack

def proc_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def processes_using(path: Path) -> list[str]:
    """Live processes whose command line or working directory mentions `path`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = str((entry / "cwd").readlink())
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (str(path) in cmdline or cwd.startswith(str(path))):
            found.append(f"{entry.name}: {cmdline[:120]}")
    return found


@pytest.mark.slow
def test_scaled_stack_runs_on_postgresql_with_two_trial_workers_and_stops_clean(tmp_path):
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=5).close()
    except psycopg2.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at 127.0.0.1:5432 ({exc})")
    base = f"mnist_etc_test_{uuid.uuid4().hex[:12]}"
    stack_dir = tmp_path / "stack"

    def query(db: str, sql: str) -> list[tuple]:
        con = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=db, connect_timeout=5)
        try:
            with con.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()
        finally:
            con.close()

    try:
        done = cli("up", "--dir", str(stack_dir), "--port", str(free_ports(1)[0]), "--workers", "2",
                   "--database-url", f"postgresql://postgres@127.0.0.1:5432/{base}", timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        state = json.loads((stack_dir / "stack.json").read_text())
        api, mlflow = state["api_url"], state["mlflow_url"]

        # Prefect answers, and what it holds is in the PostgreSQL database NAME_prefect.
        assert http_json(f"{api}/health") is True
        pools = {p["name"] for p in http_json(f"{api}/work_pools/filter", {})}
        assert {"mnist-etc", "mnist-etc-trials"} <= pools, pools
        assert {"mnist-etc", "mnist-etc-trials"} <= {r[0] for r in query(f"{base}_prefect", "SELECT name FROM work_pool")}

        # Prefect's zombie-flow automation is there, once (a second `up` on the same database adds none).
        automations = [a for a in http_json(f"{api}/automations/filter", {})
                       if a["name"] == local_stack.ZOMBIE_AUTOMATION]
        assert len(automations) == 1 and automations[0]["trigger"]["posture"] == "Proactive", automations
        assert local_stack.ensure_zombie_automation(api) is False

        # MLflow answers; a run created through it lands in NAME_mlflow, its artifact in the stack's artifact store.
        with urllib.request.urlopen(f"{mlflow}/health", timeout=10) as r:
            assert r.status == 200
        exp = http_json(f"{mlflow}/api/2.0/mlflow/experiments/create", {"name": "probe"})["experiment_id"]
        run = http_json(f"{mlflow}/api/2.0/mlflow/runs/create", {"experiment_id": exp})["run"]["info"]
        run_id = run["run_id"]
        assert run["artifact_uri"].startswith("mlflow-artifacts:/"), run["artifact_uri"]
        put = urllib.request.Request(f"{mlflow}/api/2.0/mlflow-artifacts/artifacts/{exp}/{run_id}/artifacts/probe.txt",
                                     data=b"hello", method="PUT")
        urllib.request.urlopen(put, timeout=10).close()
        assert (run_id,) in query(f"{base}_mlflow", "SELECT run_uuid FROM runs")
        stored = list((stack_dir / "mlflow-artifacts").rglob("probe.txt"))
        assert len(stored) == 1 and stored[0].read_bytes() == b"hello", stored
        assert query(base, "SELECT 1") == [(1,)]   # the study's database exists too

        # Workers: two ONLINE on mnist-etc-trials (one on mnist-etc), each in a directory of its own, which is its
        # working directory and its MNIST_ETC_WORKER_DIR; each knows the stack's Prefect API and MLflow server.
        trials = {w["name"]: w for w in http_json(f"{api}/work_pools/mnist-etc-trials/workers/filter", {})}
        assert {n for n, w in trials.items() if w["status"] == "ONLINE"} == {"trials-1", "trials-2"}, trials
        main = http_json(f"{api}/work_pools/mnist-etc/workers/filter", {})
        assert [w["name"] for w in main if w["status"] == "ONLINE"] == ["local-worker"], main
        workers = [p for p in state["processes"] if p["role"] == "worker"]
        assert sorted(w["name"] for w in workers) == ["local-worker", "trials-1", "trials-2"]
        assert len({w["dir"] for w in workers}) == 3
        for w in workers:
            env = proc_env(w["pgid"])
            assert Path(f"/proc/{w['pgid']}/cwd").readlink() == Path(w["dir"]) == stack_dir / "workers" / w["name"]
            assert env["MNIST_ETC_WORKER_DIR"] == w["dir"], (w, env.get("MNIST_ETC_WORKER_DIR"))
            assert env["PREFECT_API_URL"] == api and env["MLFLOW_TRACKING_URI"] == mlflow
            assert "PREFECT_SERVER_DATABASE_CONNECTION_URL" not in env   # workers never talk to PostgreSQL
            # The sweep's worker knows the study (deployment sweep/scaled), trial workers do not.
            assert env.get("MNIST_ETC_STUDY_STORAGE") == (None if w["pool"] == "mnist-etc-trials"
                                                          else state["study_storage"]), w
            # Trial workers poll every 2 s (Prefect's default 10 s would add ~5 s to each trial's start).
            assert env.get("PREFECT_WORKER_QUERY_SECONDS") == ("2" if w["pool"] == "mnist-etc-trials" else None), w

        shown = cli("status", "--dir", str(stack_dir))
        assert shown.returncode == 0, shown.stdout + shown.stderr
        for name in ("prefect-server", "mlflow-server", "local-worker", "trials-1", "trials-2"):
            assert name in shown.stdout and "STOPPED" not in shown.stdout, shown.stdout

        stopped = local_stack.down(stack_dir)
        assert {p["pgid"] for p in state["processes"]} <= set(stopped)
        assert not any(local_stack.alive(p) for p in stopped), "down left process groups behind"
        assert processes_using(stack_dir) == []
        assert not (stack_dir / "stack.json").exists()
    finally:
        local_stack.down(stack_dir)
        local_stack.Databases(f"postgresql://postgres@127.0.0.1:5432/{base}").drop_all()
