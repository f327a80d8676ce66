"""Hosts you can test (deployments/hosts.py, deployments/host_stack.py): network namespaces on the test subnet
10.231.0.0/24, made and removed here, as root. Skipped when this process cannot make namespaces.

- no servers: the network is removed also when a test fails, a dead run's leftovers are removed at start, a
  hidden directory is empty and read-only for a host, a blackhole cuts one address, the fault proxy's faults;
- slow: the stack's servers bound to test-subnet addresses (so authentication is on) refuse a client of another
  host without credentials, a wrong password is one sentence naming the server, and no secret is in a log;
- slow and opt-in (MNIST_ETC_HOST_SWEEP=1, ~3 min): a 3-trial sweep through --runner deployment with two worker
  hosts (benchmarks/bench_hosts.py runs it with the partition faults).
"""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from deployments import host_stack, hosts
from deployments.fault_proxy import FaultProxy
from tests.conftest import REPO, local_stack

BIN = Path(sys.executable).parent
# One network of namespaces named mnetc-* at a time: every test of this module on one pytest-xdist worker.
pytestmark = pytest.mark.xdist_group("hosts")


@pytest.fixture(scope="module")
def netns():
    reason = hosts.netns_supported()
    if reason:
        pytest.skip(f"network namespaces: {reason}")
    if hosts.namespaces() or hosts.root_links():   # never take over a network another run is using
        pytest.skip(f"namespaces or links named {hosts.PREFIX}-* exist already (another run?)")


def in_host(net: hosts.TestNet, host: hosts.Host, code: str, env: dict | None = None, hide=()) -> str:
    done = subprocess.run(net.command(host, [sys.executable, "-c", code], hide=list(hide)), capture_output=True,
                          text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


CONNECT = "import socket,sys\ntry:\n socket.create_connection(({addr!r},{port}),timeout=2).close();print('ok')\n" \
          "except OSError as e:\n print(type(e).__name__)"


# ------------------------------------------------------------------------------------------ no servers

def test_the_network_is_removed_also_when_the_body_fails(netns, tmp_path):
    with pytest.raises(RuntimeError, match="the test failed here"):
        with hosts.TestNet() as net:
            a, b = net.add_host("a", 21), net.add_host("b", 22)
            assert set(hosts.namespaces()) == {"mnetc-sw", "mnetc-a", "mnetc-b"}
            listener = subprocess.Popen(net.command(a, [sys.executable, "-c", (
                "import socket;s=socket.socket();s.bind(('10.231.0.21',7000));s.listen();s.accept();"
                "import time;time.sleep(60)")]))
            time.sleep(1.5)
            assert in_host(net, b, CONNECT.format(addr=a.addr, port=7000)) == "ok"
            raise RuntimeError("the test failed here")
    assert hosts.namespaces() == [] and hosts.root_links() == []
    listener.wait(timeout=10)   # it lived in a removed namespace: killed


def test_leftovers_of_a_dead_run_are_removed_at_start(netns):
    subprocess.run(["ip", "netns", "add", "mnetc-stale"], check=True)
    subprocess.run(["ip", "link", "add", "mnetc-x", "type", "veth", "peer", "name", "mnetc-y"], check=True)
    sleeper = subprocess.Popen(["ip", "netns", "exec", "mnetc-stale", "sleep", "120"])
    time.sleep(0.5)
    try:
        with hosts.TestNet():
            assert "mnetc-stale" not in hosts.namespaces() and hosts.root_links() == ["mnetc-root"]
            assert sleeper.wait(timeout=10) == -9
    finally:
        hosts.remove_leftovers()
    assert hosts.namespaces() == [] and hosts.root_links() == []


def test_a_hidden_directory_is_empty_and_read_only_for_the_host(netns, tmp_path):
    orch = tmp_path / "orch"
    orch.mkdir()
    (orch / "secret.txt").write_text("the orchestrator's")
    with hosts.TestNet() as net:
        w = net.add_host("w", 31)
        code = (f"import os\nprint(os.listdir({str(orch)!r}))\ntry:\n open({str(orch / 'x')!r},'w')\n"
                f"except OSError as e:\n print(e.strerror)")
        assert in_host(net, w, code, hide=[orch]).splitlines() == ["[]", "Read-only file system"]
    assert (orch / "secret.txt").read_text() == "the orchestrator's" and not (orch / "x").exists()


def test_link_down_and_blackhole_cut_what_they_name_and_heal(netns):
    with hosts.TestNet() as net:
        srv, w = net.add_host("srv", 41, 42), net.add_host("w", 43)
        server = subprocess.Popen(net.command(srv, [sys.executable, "-c", (
            "import socket,threading\n"
            "def serve(a):\n s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
            " s.bind((a,7000));s.listen()\n while True: s.accept()[0].close()\n"
            "[threading.Thread(target=serve,args=(a,)).start() for a in ('10.231.0.41','10.231.0.42')]")]))
        try:
            time.sleep(1.5)
            probe = lambda addr: in_host(net, w, CONNECT.format(addr=addr, port=7000))  # noqa: E731
            assert probe(srv.addrs[0]) == "ok" and probe(srv.addrs[1]) == "ok"
            net.blackhole(w, srv.addrs[1])
            assert probe(srv.addrs[0]) == "ok" and probe(srv.addrs[1]) != "ok"
            net.unblackhole(w, srv.addrs[1])
            net.link_down(w)
            assert probe(srv.addrs[0]) == "TimeoutError"
            net.link_up(w)
            time.sleep(1)
            assert probe(srv.addrs[0]) == "ok" and probe(srv.addrs[1]) == "ok"
            # Nothing but the subnet: no route out of a host, and 127.0.0.1 is the host's own loopback.
            assert in_host(net, w, CONNECT.format(addr="192.0.2.2", port=22)) != "ok"
            assert in_host(net, w, CONNECT.format(addr="127.0.0.1", port=5432)) == "ConnectionRefusedError"
        finally:
            server.kill()


@pytest.fixture
def echo_server():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    stop = threading.Event()

    def serve():
        s.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = s.accept()
            except OSError:
                continue
            with c:
                while data := c.recv(1024):
                    c.sendall(data)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield s.getsockname()[1]
    stop.set()
    t.join(timeout=5)
    s.close()


def round_trip(port: int) -> float | str:
    t0 = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"ping")
            data = c.recv(16)
    except OSError as exc:
        return type(exc).__name__
    return time.monotonic() - t0 if data == b"ping" else f"got {data!r}"


def test_fault_proxy_delays_drops_cuts_and_heals(echo_server):
    proxy = FaultProxy(("127.0.0.1", 0), ("127.0.0.1", echo_server)).start()
    try:
        assert round_trip(proxy.port) < 0.15
        proxy.set(delay=0.2)   # each direction: a round trip takes 0.4 s more
        assert 0.38 < round_trip(proxy.port) < 1.0
        proxy.set(delay=0, drop_every=2)
        outcomes = [round_trip(proxy.port) for _ in range(4)]
        assert [isinstance(o, float) for o in outcomes] == [True, False, True, False], outcomes
        assert proxy.dropped == 2
        proxy.set(drop_every=0)
        live = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        time.sleep(0.3)
        proxy.set(cut=True)
        assert live.recv(16) == b"" or pytest.fail("a live connection survived the cut")
        assert not isinstance(round_trip(proxy.port), float)
        proxy.set(cut=False)
        assert isinstance(round_trip(proxy.port), float)
    finally:
        proxy.stop()
    allowed = FaultProxy(("127.0.0.1", 0), ("127.0.0.1", echo_server), allow={"10.9.9.9"}).start()
    try:
        assert not isinstance(round_trip(allowed.port), float) and allowed.refused == {"127.0.0.1": 1}
    finally:
        allowed.stop()


# ------------------------------------------------------------------------ authentication off loopback

@pytest.fixture(scope="module")
def auth_stack(netns, tmp_path_factory):
    """Prefect and MLflow servers of deployments/local_stack.py on host mnetc-orch, bound to 10.231.0.2 and .3 (SQLite,
    no deployments, no trial workers), and a client host mnetc-cli with nothing of the stack's."""
    root = tmp_path_factory.mktemp("auth-stack")
    stack_dir = root / "stack"
    with hosts.TestNet() as net:
        orch, client = net.add_host("orch", 2, 3), net.add_host("cli", 50)
        try:
            done = subprocess.run(net.command(orch, [
                sys.executable, str(REPO / "deployments" / "local_stack.py"), "up", "--dir", str(stack_dir),
                "--host", orch.addrs[0], "--mlflow-host", orch.addrs[1], "--port", "4200", "--mlflow-port", "5000",
                "--mlflow", "--no-deploy"]), cwd=REPO, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
            state = json.loads((stack_dir / "stack.json").read_text())
            yield {"net": net, "orch": orch, "client": client, "dir": stack_dir, "state": state,
                   "secrets": local_stack.read_env_file(stack_dir / local_stack.SECRETS_FILE)}
        finally:
            local_stack.down(stack_dir)


REQUEST = """
import base64, json, sys, urllib.request, urllib.error
url, method, creds = sys.argv[1], sys.argv[2], sys.argv[3]
headers = {"Content-Type": "application/json"}
if creds:
    headers["Authorization"] = "Basic " + base64.b64encode(creds.encode()).decode()
req = urllib.request.Request(url, data=b"{}" if method == "POST" else None, headers=headers, method=method)
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
"""


@pytest.mark.slow
def test_servers_off_loopback_refuse_a_client_of_another_host_without_credentials(auth_stack):
    net, client, secrets = auth_stack["net"], auth_stack["client"], auth_stack["secrets"]
    api, mlflow = auth_stack["state"]["api_url"], auth_stack["state"]["mlflow_url"]
    assert api.startswith("http://10.231.0.2:") and mlflow.startswith("http://10.231.0.3:")

    def status(url: str, method: str, creds: str = "") -> str:
        done = subprocess.run(net.command(client, [sys.executable, "-c", REQUEST, url, method, creds]),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-1000:]
        return done.stdout.strip()

    prefect_creds = secrets["PREFECT_API_AUTH_STRING"]
    mlflow_creds = f"{secrets['MLFLOW_TRACKING_USERNAME']}:{secrets['MLFLOW_TRACKING_PASSWORD']}"
    search = f"{mlflow}/api/2.0/mlflow/experiments/search?max_results=1"
    assert status(f"{api}/flow_runs/filter", "POST") == "401"
    assert status(f"{api}/flow_runs/filter", "POST", "mnist-etc:wrong") == "401"
    assert status(f"{api}/flow_runs/filter", "POST", prefect_creds) == "200"   # reachable: refused for the creds
    assert status(search, "GET") == "401"
    assert status(search, "GET", f"{secrets['MLFLOW_TRACKING_USERNAME']}:wrong") == "401"
    assert status(search, "GET", mlflow_creds) == "200"


@pytest.mark.slow
def test_a_wrong_password_is_one_sentence_naming_the_server(auth_stack, tmp_path):
    from tests.test_sweep import write_space

    net, client, secrets = auth_stack["net"], auth_stack["client"], auth_stack["secrets"]
    api, mlflow = auth_stack["state"]["api_url"], auth_stack["state"]["mlflow_url"]
    space = write_space(tmp_path, "authcheck", trials=1)
    base = {k: os.environ[k] for k in ("PATH", "PYTHONPATH", "HOME") if k in os.environ}
    # End to end once (the CLI on another host: exit status, no traceback), for Prefect.
    cases = [("Prefect", dict(base, PREFECT_API_AUTH_STRING="mnist-etc:not-the-password"),
              f"the Prefect API at {api} refused this client's credentials (HTTP 401, wrong PREFECT_API_AUTH_STRING)")]
    for server, env, expected in cases:
        done = subprocess.run(net.command(client, [
            str(BIN / "mnist-etc"), "sweep", "--space", str(space), "--runner", "deployment", "--mlflow-uri", mlflow,
            "--artifacts", str(tmp_path / "a")]), cwd=REPO, env=dict(env, PREFECT_API_URL=api), capture_output=True,
            text=True, timeout=300)
        message = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
        assert done.returncode != 0 and "Traceback" not in done.stderr, (server, done.stderr[-2000:])
        assert expected in message, (server, done.stderr[-2000:])
        assert message.endswith(".") and message.count(". ") == 0, message
        assert "not-the-password" not in done.stderr + done.stdout

    # The pre-start check from this host (10.231.0.1, the root namespace), for MLflow: wrong, then missing.
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from mnist_etc.errors import UserError
    from runners.deployment import check_deployment_runner

    for password, word in (("not-the-password", "wrong"), (None, "missing")):
        env = {"MLFLOW_TRACKING_USERNAME": "mnist-etc", "MLFLOW_TRACKING_PASSWORD": password}
        saved = {k: os.environ.get(k) for k in env}
        try:
            for k, v in env.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
            with temporary_settings({PREFECT_API_URL: api, PREFECT_API_AUTH_STRING: secrets["PREFECT_API_AUTH_STRING"]}):
                with pytest.raises(UserError) as info:
                    check_deployment_runner(mlflow)
        finally:
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        message = str(info.value)
        assert message.startswith(f"the MLflow tracking server at {mlflow} refused this client's credentials (HTTP "
                                  f"401, {word} MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)"), message
        assert message.endswith(".") and message.count(". ") == 0 and "not-the-password" not in message


@pytest.mark.slow
def test_secrets_are_in_private_files_only(auth_stack):
    stack_dir, secrets = auth_stack["dir"], auth_stack["secrets"]
    for name in (local_stack.SECRETS_FILE, local_stack.WORKER_SECRETS_FILE, local_stack.MLFLOW_AUTH_FILE):
        assert stat.S_IMODE((stack_dir / name).stat().st_mode) == 0o600, name
    worker = local_stack.read_env_file(stack_dir / local_stack.WORKER_SECRETS_FILE)
    assert set(worker) == set(local_stack.CLIENT_SECRET_KEYS)   # a worker machine gets no server or database key
    values = [secrets["PREFECT_API_AUTH_STRING"].split(":", 1)[1], secrets["MLFLOW_TRACKING_PASSWORD"],
              secrets["MLFLOW_FLASK_SERVER_SECRET_KEY"]]
    assert all(len(v) >= 32 for v in values)
    own = {local_stack.SECRETS_FILE, local_stack.WORKER_SECRETS_FILE, local_stack.MLFLOW_AUTH_FILE}
    leaks = [f"{p}" for p in stack_dir.rglob("*") if p.is_file() and p.name not in own
             and any(v.encode() in p.read_bytes() for v in values)]
    assert leaks == [], leaks   # logs, env.sh, stack.json, the servers' databases
    assert f". {stack_dir / local_stack.SECRETS_FILE}" in (stack_dir / "env.sh").read_text()
    for p in auth_stack["state"]["processes"]:   # the command lines (ps) hold no secret either
        cmdline = Path(f"/proc/{p['pgid']}/cmdline").read_bytes()
        assert not any(v.encode() in cmdline for v in values), p["name"]


# ------------------------------------------------------------------------ the multi-host sweep (opt-in)

HOST_SPACE = """
study: {study}
sampler: {{name: random, seed: 1}}
trials: 3
parallelism: 2
stale_trial_retries: 1
params:
  hid_dim: {{type: int, low: 4, high: 16, log: true}}
  ae_noise_multiplier: {{type: categorical, choices: [0.0, 1.0]}}
fixed: {{ae_epochs: 1, clf_epochs: 2, batch_size: 32}}
attack: {{victims: 3, n_iter: 8, n_samples: 32, n_best: 8}}
data: {{train_size: 300}}
winner: {{max_leakage: 0.9, max_epsilon: null, fallback: lowest_leakage}}
"""


def run_host_sweep(state: dict, study: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """A sweep of HOST_SPACE through --runner deployment on the orchestrator host (its artifacts in <root>/orch)."""
    space = Path(state["root"]) / "orch" / f"{study}.yaml"
    space.write_text(HOST_SPACE.format(study=study))
    argv = [str(BIN / "mnist-etc"), "sweep", "--space", str(space), "--runner", "deployment",
            "--artifacts", str(Path(state["root"]) / "orch" / "artifacts")]
    return subprocess.run(host_stack.orchestrator_command(state, argv), cwd=REPO,
                          env=host_stack.orchestrator_env(state), capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("MNIST_ETC_HOST_SWEEP"),
                    reason="opt-in (~3 min): MNIST_ETC_HOST_SWEEP=1; benchmarks/bench_hosts.py runs it too")
def test_a_sweep_runs_every_trial_on_worker_hosts_through_the_network(netns, tmp_path):
    import optuna

    from mnist_etc.sweep.storage import open_storage

    name = f"mnist_etc_test_{uuid.uuid4().hex[:12]}"
    stack = host_stack.HostStack(tmp_path / "hosts", 2, f"postgresql://postgres@127.0.0.1:5432/{name}")
    try:
        state = stack.up()
        done = run_host_sweep(state, "hosts")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

        secrets = local_stack.read_env_file(Path(state["secrets_file"]))
        storage = state["study_storage"].replace(f"{state['root_addr']}:{host_stack.PG_PROXY_PORT}", "127.0.0.1:5432")
        trials = optuna.load_study(study_name="hosts", storage=open_storage(storage.replace(
            "_stack@", f"_stack:{secrets['PGPASSWORD']}@"))).trials
        assert sorted(t.state.name for t in trials) == ["COMPLETE"] * 3, [t.state.name for t in trials]

        # Every trial's flow run COMPLETED on a worker host, and both hosts ran one.
        runs = host_stack.trial_flow_runs(state, "hosts")
        assert sorted(r["state_type"] for r in runs) == ["COMPLETED"] * 3, runs
        where = host_stack.where_trials_ran(state, "hosts")
        assert set(where.values()) == {"w1", "w2"}, where

        # Its files crossed the network: the MLflow server's artifact store (on the orchestrator) holds each trial's
        # upload, and the sweep's copies came back through it.
        store = Path(state["stack_dir"]) / "mlflow-artifacts"
        assert len(list(store.rglob("trial/outcome.json"))) == 3
        sweep_dir = Path(state["root"]) / "orch" / "artifacts" / "sweeps" / "hosts"
        assert len(list(sweep_dir.glob("trial-*/outcome.json"))) == 3

        # A worker could not read the orchestrator's files: in its mount namespace <root>/orch is empty.
        for w in state["workers"]:
            seen = subprocess.run(["nsenter", "-t", str(w["pgid"]), "-m", "ls", "-A", str(Path(state["root"]) / "orch")],
                                  capture_output=True, text=True, timeout=30)
            assert seen.returncode == 0 and seen.stdout.strip() == "", (w["name"], seen)
            assert (Path(w["dir"]) / "trial-runs").is_dir()

        # PostgreSQL was used by the orchestrator host only; no secret is anywhere it should not be.
        peers, refused = host_stack.pg_proxy_peers(state)
        assert set(peers) == set(state["orch"]["addrs"][:1]) and refused == {}, (peers, refused)
        assert host_stack.find_secrets(state) == []
    finally:
        stack.down(drop_databases=True)
    assert hosts.namespaces() == [] and hosts.root_links() == []
