"""`--runner deployment` for real: a Prefect server, work pool mnist-etc-trials with two process workers (each in
its own working directory, MNIST_ETC_WORKER_DIR set), deployment trial/default from prefect.yaml, and an MLflow
tracking server with --serve-artifacts (SQLite backend). A trial is a flow run on a worker; its files come back
to the sweep through MLflow only. Every process started here runs in its own process group, killed at teardown.

Without servers: the code-version refusal sentence and the pre-start check sentences.
"""
from __future__ import annotations

import contextvars
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from mnist_etc.errors import UserError
from mnist_etc.ports import free_ports
from mnist_etc.sweep import transport
from mnist_etc.sweep.trial import TrialOutcome, TrialSpec
from mnist_etc.tracking.layout import OUTCOME_FILE
from tests.conftest import local_stack
from tests.test_sweep import write_space

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
POOL = "mnist-etc-trials"
SWEEP_POOL = "mnist-etc"


# ------------------------------------------------------------------------------------------------ processes

class Processes:
    """Processes of one fixture, each the leader of its own process group (started as the stack starts its own);
    `stop()` ends every group."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, cmd: list[str], env: dict[str, str], log: Path, cwd: Path = REPO) -> subprocess.Popen:
        proc = local_stack.spawn(cmd, env, log, cwd=cwd)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        local_stack.stop_groups([p.pid for p in reversed(self.procs)], timeout=15.0)
        for p in self.procs:
            p.poll()
        assert not any(local_stack.alive(p.pid) for p in self.procs), "processes were left behind"


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    local_stack.signal_groups([pgid], sig)


def wait_for(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    local_stack.wait_healthy(url, proc, log, timeout, what=" ".join(map(str, proc.args[:3])))


def start_mlflow(procs: Processes, root: Path, port: int) -> subprocess.Popen:
    root.mkdir(parents=True, exist_ok=True)
    log = root / "mlflow.log"
    proc = procs.start([str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                        "--serve-artifacts", "--artifacts-destination", str(root / "artifacts"),
                        "--host", HOST, "--port", str(port), "--workers", "1"],
                       dict(os.environ, PYTHONUNBUFFERED="1"), log)
    wait_for(f"http://{HOST}:{port}/health", proc, log)
    return proc


def run(cmd: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd[:4]}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """An MLflow tracking server (SQLite backend, --serve-artifacts into a temporary folder) on a free port."""
    procs = Processes()
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_ports(1)[0]
    try:
        proc = start_mlflow(procs, root, port)
        yield {"uri": f"http://{HOST}:{port}", "root": root, "port": port, "proc": proc, "procs": procs}
    finally:
        procs.stop()


@pytest.fixture(scope="module")
def trial_pool(tmp_path_factory, mlflow_server):
    """A Prefect server, work pool mnist-etc-trials, `prefect deploy` of trial/default and sweep/scaled from
    prefect.yaml, two process workers on mnist-etc-trials, each in its own working directory with MNIST_ETC_WORKER_DIR
    set there, and one worker on mnist-etc for the sweep deployment's flow runs."""
    procs = Processes()
    root = tmp_path_factory.mktemp("trial-pool")
    port = free_ports(1)[0]
    api = f"http://{HOST}:{port}/api"
    env = dict(os.environ, PREFECT_HOME=str(root / "home"), PREFECT_API_URL=api, PREFECT_SERVER_API_HOST=HOST,
               PREFECT_SERVER_API_PORT=str(port), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_CLI_PROMPT="false", PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3")
    try:
        server = procs.start([str(BIN / "prefect"), "server", "start", "--host", HOST, "--port", str(port)], env,
                             root / "server.log")
        wait_for(f"{api}/health", server, root / "server.log")
        local_stack.ensure_zombie_automation(api)   # as deployments/local_stack.py up does
        for pool in (POOL, SWEEP_POOL):
            run([str(BIN / "prefect"), "work-pool", "create", pool, "--type", "process", "--overwrite"], env)
        run([str(BIN / "prefect"), "--no-prompt", "deploy", "--name", "trial/default", "--name", "sweep/scaled"],
            env)
        # The sweep's own flow runs (the orchestrator) go to pool mnist-etc, as on the stack.
        sweeper = root / "sweeper"
        sweeper.mkdir()

        def start_sweeper() -> subprocess.Popen:
            # As on the scaled stack, it knows the MLflow server (sweep/scaled reads MLFLOW_TRACKING_URI).
            return procs.start([str(BIN / "prefect"), "worker", "start", "--pool", SWEEP_POOL, "--type", "process",
                                "--name", "sweeper"], dict(env, MLFLOW_TRACKING_URI=mlflow_server["uri"]),
                               sweeper / "worker.log", cwd=sweeper)

        sweeper_proc = start_sweeper()
        workers = []

        def start_worker(i: int) -> dict:
            wdir = root / f"worker-{i}"
            wdir.mkdir(exist_ok=True)
            return {"dir": wdir, "name": f"w{i}", "proc": procs.start(
                [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process", "--name", f"w{i}",
                 "--limit", "1"],
                dict(env, MNIST_ETC_WORKER_DIR=str(wdir), PREFECT_WORKER_QUERY_SECONDS=local_stack.TRIAL_WORKER_QUERY),
                wdir / "worker.log", cwd=wdir)}

        for i in (1, 2):
            workers.append(start_worker(i))
        yield {"api": api, "env": env, "root": root, "workers": workers, "procs": procs, "start_worker": start_worker,
               "sweeper": sweeper_proc, "start_sweeper": start_sweeper}
    finally:
        kill_flow_run_processes(api)
        procs.stop()


def kill_flow_run_processes(api: str) -> None:
    """A process worker starts each flow run in a process group of its own, which outlives the worker: kill the
    groups of this server's unfinished flow runs (checked by their PREFECT__FLOW_RUN_ID, not just the pid)."""
    try:
        runs = json.loads(urllib.request.urlopen(urllib.request.Request(
            f"{api}/flow_runs/filter", data=json.dumps({"limit": 200}).encode(),
            headers={"Content-Type": "application/json"}), timeout=10).read())
    except OSError:
        return
    for r in runs:
        pid = str(r.get("infrastructure_pid") or "").rsplit(":", 1)[-1]
        if r.get("state_type") in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED") or not pid.isdigit():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"PREFECT__FLOW_RUN_ID={r['id']}".encode() in environ:
            kill_group(int(pid))


@pytest.fixture
def prefect_api(trial_pool, monkeypatch):
    """This process talks to the module's Prefect server (the runner, the pre-start check)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.setenv("PREFECT_API_URL", trial_pool["api"])
    with temporary_settings({PREFECT_API_URL: trial_pool["api"]}):
        yield trial_pool


def tiny_spec(tmp_path: Path, mlflow_uri: str | None = None, run_id: str | None = None, number: int = 0,
              study: str = "unit") -> TrialSpec:
    from mnist_etc.sweep.space import load_search_space

    space = load_search_space(write_space(tmp_path / "spaces", study))
    params = {"hid_dim": 4, "ae_noise_multiplier": 0.0}
    return TrialSpec(study=study, number=number, params=params, train=space.train_config(params), data=space.data,
                     attack=space.attack, trial_dir=str(tmp_path / "sweeps" / study / f"trial-{number}"),
                     objectives=(space.accuracy_metric, space.leakage_metric), mlflow_tracking_uri=mlflow_uri,
                     mlflow_run_id=run_id)


# ------------------------------------------------------------------------------------- no servers needed

def test_a_worker_of_another_code_version_refuses_with_one_sentence(tmp_path):
    from flows.trial import trial
    from runners.deployment import REFUSED_STATE

    spec = tiny_spec(tmp_path)
    state = trial.fn(spec.to_dict(), "0.1.0+000000000000")
    assert state.is_failed() and state.name == REFUSED_STATE
    mine = transport.code_version()
    assert state.message.startswith("the worker ") and state.message.count(". ") == 0, state.message
    assert f"code version {mine}" in state.message and "version 0.1.0+000000000000" in state.message
    assert transport.code_version_refusal(mine, mine, "here") is None


def test_the_code_version_changes_with_the_trial_code(tmp_path, monkeypatch):
    import mnist_etc

    before = transport.code_version()
    assert before == transport.code_version() and "+" in before
    # A copy of the package with one byte changed in the trial code hashes differently.
    copy = tmp_path / "mnist_etc"
    subprocess.run(["cp", "-r", str(Path(mnist_etc.__file__).parent), str(copy)], check=True)
    (copy / "sweep" / "trial.py").write_text((copy / "sweep" / "trial.py").read_text() + "\n# changed\n")
    monkeypatch.setattr(mnist_etc, "__file__", str(copy / "__init__.py"))
    transport.code_version.cache_clear()
    try:
        assert transport.code_version() != before
    finally:
        transport.code_version.cache_clear()


def test_a_spec_survives_the_trip_through_flow_parameters(tmp_path):
    spec = tiny_spec(tmp_path, "http://127.0.0.1:1", "abc")
    from mnist_etc.atomic import jsonable

    assert transport.trial_spec_from_dict(json.loads(json.dumps(jsonable(spec.to_dict())))) == spec
    with pytest.raises(UserError, match="unknown key"):
        transport.trial_spec_from_dict({**spec.to_dict(), "extra": 1})


def test_pre_start_check_without_prefect_api_or_mlflow_server(monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from runners.deployment import check_deployment_runner

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings({PREFECT_API_URL: None}):
        with pytest.raises(UserError, match=r"^--runner deployment needs a Prefect server but PREFECT_API_URL is "
                                            r"not set; .*export PREFECT_API_URL=http://HOST:PORT/api\.$"):
            check_deployment_runner("http://127.0.0.1:5000")
    dead = f"http://{HOST}:{free_ports(1)[0]}"
    with temporary_settings({PREFECT_API_URL: f"{dead}/api"}):
        with pytest.raises(UserError, match=rf"^--runner deployment needs the Prefect API at "
                                            rf"PREFECT_API_URL={dead}/api, which does not answer \(.*\); "):
            check_deployment_runner("http://127.0.0.1:5000")


def test_cli_refuses_runner_deployment_before_anything_starts(tmp_path):
    space = write_space(tmp_path, "clicheck", trials=1)
    env = dict(os.environ, PREFECT_API_URL=f"http://{HOST}:{free_ports(1)[0]}/api")
    done = subprocess.run([str(BIN / "mnist-etc"), "sweep", "--space", str(space), "--runner", "deployment",
                           "--artifacts", str(tmp_path / "a")], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "needs the Prefect API at PREFECT_API_URL=" in done.stderr, done.stderr[-2000:]
    done = subprocess.run([str(BIN / "mnist-etc"), "sweep", "--space", str(space), "--task-runner", "deployment",
                           "--no-prefect", "--artifacts", str(tmp_path / "a")], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode != 0 and "cannot be combined with --runner deployment" in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "a" / "sweeps" / "clicheck").exists()


# ---------------------------------------------------------------------------------- transport, real MLflow

def fake_trial_dir(directory: Path, number: int = 0) -> TrialOutcome:
    """A published trial directory as run_trial leaves it (no training: the transport only moves files)."""
    (directory / "model").mkdir(parents=True)
    (directory / "images").mkdir()
    (directory / "model" / "model.json").write_text('{"hid_dim": 4}\n')
    (directory / "model" / "encoder.weights.h5").write_bytes(os.urandom(50_000))
    (directory / "images" / "attack_grid.png").write_bytes(b"\x89PNG fake")
    (directory / "config.json").write_text(json.dumps({"trial_dir": str(directory)}))
    outcome = TrialOutcome(number, [0.5, 0.1], {"trial_dir": str(directory), "model_dir": str(directory / "model"),
                                                "attack_dir": str(directory / "attack"), "epsilon": "inf"},
                           {"val_accuracy": 0.5}, images=[str(directory / "images" / "attack_grid.png")])
    (directory / OUTCOME_FILE).write_text(json.dumps(outcome.to_dict()))
    return outcome


@pytest.mark.slow
def test_transport_round_trip_through_the_mlflow_server(mlflow_server, tmp_path):
    from mlflow import MlflowClient

    uri = mlflow_server["uri"]
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment(f"transport-{os.getpid()}")).info.run_id
    worker = tmp_path / "worker" / "trial-3"
    fake_trial_dir(worker, 3)
    transport.upload_trial(worker, uri, run_id)
    paths = {a.path for a in client.list_artifacts(run_id, "trial")}
    assert {"trial/outcome.json", "trial/model", "trial/images", "trial/config.json"} <= paths, paths

    here = tmp_path / "orchestrator" / "sweeps" / "s" / "trial-3"
    outcome = transport.download_trial(uri, run_id, here)
    assert outcome.number == 3 and outcome.values == [0.5, 0.1]
    assert outcome.user_attrs["trial_dir"] == str(here) and outcome.user_attrs["model_dir"] == str(here / "model")
    assert outcome.user_attrs["attack_dir"] == str(here / "attack")
    assert outcome.images == [str(here / "images" / "attack_grid.png")]
    assert (here / "model" / "encoder.weights.h5").read_bytes() == (worker / "model" / "encoder.weights.h5").read_bytes()
    assert json.loads((here / OUTCOME_FILE).read_text())["user_attrs"]["trial_dir"] == str(here)
    assert json.loads((here / "config.json").read_text())["trial_dir"] == str(here)
    assert not list(here.parent.glob(".trial-3.partial-*"))

    # A run with no finished trial: nothing to recover; a dead server: the download gives up with the cause.
    empty = client.create_run(client.get_run(run_id).info.experiment_id).info.run_id
    assert transport.fetch_outcome(uri, empty, tmp_path / "nothing" / "trial-9") is None
    assert not (tmp_path / "nothing" / "trial-9").exists()
    dead = f"http://{HOST}:{free_ports(1)[0]}"
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"download of MLflow run .* failed after \d+ attempt\(s\) over 3 s"):
        transport.download_trial(dead, run_id, tmp_path / "dead" / "trial-3", retry_seconds=3)
    with pytest.raises(RuntimeError, match=rf"upload of {worker} to MLflow run .* failed after \d+ attempt\(s\)"):
        transport.upload_trial(worker, dead, "0" * 32, retry_seconds=3)   # MLflow caches a known run's store
    assert time.monotonic() - t0 < 60


# ----------------------------------------------------------------------------- the runner, real Prefect

@pytest.mark.slow
def test_pre_start_check_names_a_missing_deployment_and_an_mlflow_server_that_does_not_answer(
        prefect_api, mlflow_server):
    from runners.deployment import check_deployment_runner

    with pytest.raises(UserError, match=r"^--runner deployment needs an http\(s\):// MLflow tracking server .*got "
                                        r"'sqlite:///x.db'; pass --mlflow-uri http://HOST:PORT"):
        check_deployment_runner("sqlite:///x.db")
    dead = f"http://{HOST}:{free_ports(1)[0]}"
    with pytest.raises(UserError, match=rf"^--runner deployment needs the MLflow tracking server at {dead}, which "
                                        rf"does not answer"):
        check_deployment_runner(dead)
    with pytest.raises(UserError, match=r"^deployment 'trial/nowhere' is not on the Prefect server at .*; deploy it"):
        check_deployment_runner(mlflow_server["uri"], "trial/nowhere")
    assert check_deployment_runner(mlflow_server["uri"]).work_pool_name == POOL


@pytest.mark.slow
def test_a_pool_with_no_worker_online_stops_the_sweep_with_one_sentence(prefect_api, tmp_path, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    import runners.deployment as dt

    monkeypatch.setattr(dt, "NO_WORKER_SECONDS", 2.0)
    monkeypatch.setattr(dt, "POLL_SECONDS", 0.5)
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="mnist-etc-idle", type="process"), overwrite=True)
        flow_id = client.create_flow_from_name("trial")
        client.create_deployment(flow_id=flow_id, name="idle", work_pool_name="mnist-etc-idle",
                                 entrypoint="flows/trial.py:trial", path=str(REPO))
    runner = dt.DeploymentTrialRunner("trial/idle")
    try:
        future = runner.submit(tiny_spec(tmp_path, "http://127.0.0.1:1", "r1"))
        with pytest.raises(UserError, match=r"^work pool mnist-etc-idle has no worker online \(flow run unit-trial-0 "
                                            r"waited \d+ s\); start one with: .*prefect worker start --pool "
                                            r"mnist-etc-idle --type process$"):
            future.result(timeout=60)
    finally:
        runner.close()
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=50)
    mine = [r for r in runs if r.name == "unit-trial-0" and r.deployment_id is not None]
    assert mine and all(r.state.type.value == "CANCELLED" for r in mine), [(r.name, r.state) for r in mine]


@pytest.mark.slow
def test_a_worker_of_another_code_version_stops_the_sweep(prefect_api, mlflow_server, tmp_path):
    from mlflow import MlflowClient

    from runners.deployment import DeploymentTrialRunner

    client = MlflowClient(mlflow_server["uri"])
    run_id = client.create_run(client.create_experiment(f"refusal-{os.getpid()}")).info.run_id
    runner = DeploymentTrialRunner()
    runner.code_version = "0.0.0+0123456789ab"   # as a sweep from another checkout would send
    try:
        future = runner.submit(tiny_spec(tmp_path, mlflow_server["uri"], run_id, study="refused"))
        with pytest.raises(UserError, match=r"^the worker .* runs mnist_etc code version .* but the sweep sent trials "
                                            r"of version 0\.0\.0\+0123456789ab; install the sweep's code"):
            future.result(timeout=240)
    finally:
        runner.close()


@pytest.mark.slow
def test_sweep_through_the_work_pool_brings_every_trial_back_through_mlflow(prefect_api, mlflow_server, tmp_path):
    import optuna
    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    from mnist_etc.export_source import source_from_mlflow

    root = tmp_path / "artifacts"
    space = write_space(tmp_path, "pool", trials=2, parallelism=2)
    done = subprocess.run([str(BIN / "mnist-etc"), "sweep", "--space", str(space), "--runner", "deployment",
                           "--mlflow-uri", mlflow_server["uri"], "--artifacts", str(root)],
                          cwd=REPO, env=prefect_api["env"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]

    study = optuna.load_study(study_name="pool", storage=f"sqlite:///{root / 'sweeps' / 'optuna.db'}")
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "COMPLETE"]
    study_dir = (root / "sweeps" / "pool").resolve()
    for t in study.trials:
        tdir = study_dir / f"trial-{t.number}"
        assert t.user_attrs["trial_dir"] == str(tdir) and t.user_attrs["model_dir"] == str(tdir / "model")
        for f in ("config.json", OUTCOME_FILE, "model/model.json", "attack/attack.json", "images/attack_grid.png"):
            assert (tdir / f).is_file(), f
        run = MlflowClient(mlflow_server["uri"]).list_artifacts(t.user_attrs["mlflow_run_id"], "trial")
        assert "trial/outcome.json" in {a.path for a in run}
        # Uploaded once: the orchestrator does not log the downloaded copy to the run's root again.
        root_paths = {a.path for a in MlflowClient(mlflow_server["uri"]).list_artifacts(t.user_attrs["mlflow_run_id"])}
        assert "model" not in root_paths and "outcome.json" not in root_paths, root_paths
    # The workers kept nothing: each trial's local copy was deleted once uploaded.
    for w in prefect_api["workers"]:
        assert not [p for p in w["dir"].rglob("*") if p.is_file() and p.name != "worker.log"], w["dir"]

    with get_client(sync_client=True) as client:
        sweeps = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["sweep"])))
        trials = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["trial"])))
        sweep_run = next(r for r in sweeps if r.name == "sweep-pool")
        mine = [r for r in trials if r.name.startswith("pool-trial-")]
        assert sorted(r.name for r in mine) == ["pool-trial-0", "pool-trial-1"]
        logs = "".join((w["dir"] / "worker.log").read_text(errors="replace") for w in prefect_api["workers"])
        for r in mine:
            assert r.state.type.value == "COMPLETED" and r.work_pool_name == POOL
            assert client.read_task_run(r.parent_task_run_id).flow_run_id == sweep_run.id
            assert str(r.id) in logs   # run by one of the pool's workers

    winner = json.loads((study_dir / "winner.json").read_text())
    assert winner["trial_dir"].startswith(str(study_dir)) and winner["mlflow"]["version"]
    src = source_from_mlflow(f"models:/{winner['mlflow']['registered_model']}@champion", mlflow_server["uri"],
                             tmp_path / "downloads")
    assert (src.model_dir / "model.json").is_file()


# ----------------------------------------------------------------------------------------------------- faults

def in_process_sweep(tmp_path: Path, study: str, mlflow_uri: str, trials: int, parallelism: int, runner):
    """The orchestrator in this process (so the test can shorten the runner's timings); trials on the pool."""
    from mnist_etc.sweep import SweepOptions, run_sweep
    from mnist_etc.sweep.space import load_search_space

    space = load_search_space(write_space(tmp_path / "spaces", study, trials=trials, parallelism=parallelism))
    options = SweepOptions.build(storage=None, artifacts=tmp_path / "artifacts", mlflow_uri=mlflow_uri)
    lines: list[str] = []
    summary = run_sweep(space, options, runner, log=lines.append)
    return summary, options, lines


def flow_runs_named(prefix: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["trial"])), limit=200)
    return [r for r in runs if r.name.startswith(prefix)]


def wait_until(condition, timeout: float, what: str, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.slow
def test_a_worker_killed_mid_trial_loses_nothing_its_trial_is_failed_and_run_again(
        prefect_api, mlflow_server, tmp_path, monkeypatch):
    """kill -9 of a worker and of the trial it runs (its machine gone): the flow run is set CRASHED after the
    heartbeat timeout, the trial is failed as stale and re-run, and the sweep ends with exactly the requested
    COMPLETE trials, none RUNNING."""
    import threading

    import optuna

    import runners.deployment as dtr

    monkeypatch.setattr(dtr, "POLL_SECONDS", 1.0)
    runner = dtr.DeploymentTrialRunner()
    runner.lost_after = 45.0   # > the 30 s heartbeat period of prefect.yaml: a live trial is never taken as lost
    killed: dict = {}

    def kill_one_worker() -> None:
        run = wait_until(lambda: next((r for r in flow_runs_named("killed-trial-")
                                       if r.state.is_running() and r.infrastructure_pid), None), 240,
                         "a trial flow run RUNNING")
        time.sleep(3)   # into the trial
        pid = int(str(run.infrastructure_pid).rsplit(":", 1)[-1])
        worker = next(w for w in prefect_api["workers"] if w["proc"].pid == parent_of(pid))
        killed.update(run=run, worker=worker, groups=local_stack.tree_groups([worker["proc"].pid]))
        local_stack.signal_groups(killed["groups"], signal.SIGKILL)

    # The copied context carries the test's Prefect settings (this server's API URL) into the thread.
    killer = threading.Thread(target=contextvars.copy_context().run, args=(kill_one_worker,), daemon=True)
    killer.start()
    try:
        summary, options, lines = in_process_sweep(tmp_path, "killed", mlflow_server["uri"], 3, 2, runner)
    finally:
        killer.join(timeout=300)
        for i, w in enumerate(prefect_api["workers"]):   # the next tests get two workers again
            if w["proc"].poll() is not None or not local_stack.alive(w["proc"].pid):
                prefect_api["workers"][i] = prefect_api["start_worker"](i + 1)

    assert killed, "no worker was killed"
    assert not any(local_stack.alive(g) for g in killed["groups"]), "the killed worker's processes live on"
    study = optuna.load_study(study_name="killed", storage=options.storage_url)
    by_state: dict[str, list] = {}
    for t in study.trials:
        by_state.setdefault(t.state.name, []).append(t)
    assert len(by_state.get("COMPLETE", [])) == 3 and "RUNNING" not in by_state, {k: len(v) for k, v in by_state.items()}
    [lost] = by_state["FAIL"]
    assert lost.user_attrs.get("stale") is True, lost.user_attrs
    retry = next(t for t in by_state["COMPLETE"] if t.user_attrs.get("retry_of") == lost.number)
    assert retry.params == lost.params
    assert any(f"trial #{lost.number}: " in line and "heartbeat" in line for line in lines), lines
    [crashed] = [r for r in flow_runs_named("killed-trial-") if r.id == killed["run"].id]
    assert crashed.state.type.value == "CRASHED", crashed.state
    assert summary.counts["COMPLETE"] == 3 and summary.counts["FAIL"] == 1 and summary.counts["RUNNING"] == 0


@pytest.mark.slow
def test_a_trial_that_finishes_after_the_sweep_gave_it_up_ends_superseded_not_completed(
        prefect_api, mlflow_server, tmp_path):
    """A worker cut off from the network keeps training; the sweep sets its flow run CRASHED (no heartbeat) and
    re-runs the trial. When the link returns and the cut trial finishes, its flow run must not end COMPLETED (Optuna
    holds it FAIL): it ends Failed, named Superseded, with the sweep's reason."""
    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client

    import runners.deployment as dtr
    from mnist_etc.sweep.runner import TrialLost

    client = MlflowClient(mlflow_server["uri"])
    run_id = client.create_run(client.create_experiment(f"superseded-{os.getpid()}")).info.run_id
    runner = dtr.DeploymentTrialRunner()
    try:
        future = runner.submit(tiny_spec(tmp_path, mlflow_server["uri"], run_id, study="superseded"))
        [inflight] = list(runner._runs.values())
        wait_until(lambda: next((r for r in flow_runs_named("superseded-trial-") if r.state.is_running()), None),
                   240, "the trial flow run RUNNING")
        with get_client(sync_client=True) as api:   # what the watcher does after LOST_AFTER_SECONDS of silence
            runner._lose(api, inflight, "sent no heartbeat for 91 s (its worker lost its connection)")
        with pytest.raises(TrialLost, match="set CRASHED by the sweep"):
            future.result(timeout=10)
        final = wait_until(lambda: next((r for r in flow_runs_named("superseded-trial-")
                                         if r.state.is_final() and not r.state.is_crashed()), None),
                           300, "the cut trial's flow run in a final state other than CRASHED")
    finally:
        runner.close()
    assert final.state.type.value == "FAILED" and final.state.name == dtr.SUPERSEDED_STATE, final.state
    assert final.state.message.startswith("finished after the sweep had given it up as lost: flow run "
                                          "superseded-trial-0 sent no heartbeat for 91 s"), final.state.message


@pytest.mark.slow
def test_an_mlflow_server_restarted_mid_sweep_delays_the_uploads_and_the_sweep_completes(
        prefect_api, mlflow_server, tmp_path):
    """The MLflow server is stopped while the trials train and kept down until a worker's upload has failed at
    least once, then started again on the same store: the uploads retry and both trials complete."""
    import threading

    import optuna
    from runners.deployment import DeploymentTrialRunner

    seen: dict = {}

    def upload_retries() -> list[str]:
        """The workers' lines saying an upload of one of this sweep's trials failed and will be retried (the
        flow-run process writes to its worker's log; its directory is named by the flow-run id)."""
        ids = [str(r.id) for r in flow_runs_named("restart-trial-")]
        lines = "".join((w["dir"] / "worker.log").read_text(errors="replace")
                        for w in prefect_api["workers"]).splitlines()
        return [line for line in lines if "upload of" in line and "retrying in" in line
                and any(i in line for i in ids)]

    def restart_mlflow() -> None:
        wait_until(lambda: sum(r.state.is_running() for r in flow_runs_named("restart-trial-")) >= 1, 240,
                   "a trial flow run RUNNING")
        old = mlflow_server["proc"]
        kill_group(old.pid, signal.SIGTERM)
        old.wait(timeout=30)
        seen["down"] = time.monotonic()
        seen["retries"] = wait_until(upload_retries, 90, "a worker retrying its upload while MLflow is down", 1.0)
        mlflow_server["proc"] = start_mlflow(mlflow_server["procs"], mlflow_server["root"], mlflow_server["port"])
        seen["up"] = time.monotonic()

    restarter = threading.Thread(target=contextvars.copy_context().run, args=(restart_mlflow,), daemon=True)
    restarter.start()
    try:
        summary, options, lines = in_process_sweep(tmp_path, "restart", mlflow_server["uri"], 2, 2,
                                                   DeploymentTrialRunner())
    finally:
        restarter.join(timeout=300)
        if mlflow_server["proc"].poll() is not None:
            mlflow_server["proc"] = start_mlflow(mlflow_server["procs"], mlflow_server["root"], mlflow_server["port"])

    assert "up" in seen, "the MLflow server was not restarted"
    assert seen["retries"], seen
    study = optuna.load_study(study_name="restart", storage=options.storage_url)
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "COMPLETE"]
    for t in study.trials:   # the files came back through the restarted server
        assert (Path(t.user_attrs["trial_dir"]) / OUTCOME_FILE).is_file()


def sweep_flow_run(params: dict) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("sweep/scaled")
        return client.create_flow_run_from_deployment(deployment.id, parameters=params)


def flow_run_state(flow_run_id) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


@pytest.mark.slow
def test_sweep_deployment_twice_at_once_then_its_machine_lost_then_the_rerun_resumes(
        prefect_api, mlflow_server, postgres_url, tmp_path):
    """Two `prefect deployment run 'sweep/scaled'` of one study (on PostgreSQL) at once: one is refused by the
    study lock with one sentence, the other sweeps. Once a trial is in, the orchestrator's machine is lost: kill -9
    of its flow-run process and of the worker that started it. Rerunning the deployment (on a new worker) resumes,
    nothing finished is lost, no trial is told twice or left RUNNING, and the zombie automation crashes the dead
    sweep's flow run (no worker is left to report it)."""
    import optuna

    space = write_space(tmp_path, "pooled", trials=3, parallelism=1)
    # sweep/scaled: task_runner "deployment" is the deployment's; the MLflow server comes from the worker's env.
    params = {"space": str(space), "storage": postgres_url, "artifacts": str(tmp_path / "artifacts")}
    first, second = sweep_flow_run(params), sweep_flow_run(params)

    from mnist_etc.sweep.storage import open_storage

    storage = open_storage(postgres_url)

    def study():
        try:
            return optuna.load_study(study_name="pooled", storage=storage)
        except KeyError:   # not created yet
            return None

    def refused():
        runs = [flow_run_state(r.id) for r in (first, second)]
        return next((r for r in runs if r.state.is_final()), None)

    loser = wait_until(refused, 300, "one of the two sweep flow runs refused")
    assert loser.state.is_failed(), loser.state
    # On one machine the study folder's file lock answers first; across machines the PostgreSQL advisory lock
    # (tests/test_study_lock.py): either way one sentence, no lock error.
    assert re.search(r"UserError: study 'pooled' is being swept (by another process )?right now .*; wait for it to "
                     r"finish or pass another --study\.$", loser.state.message), loser.state.message
    winner = first if loser.id == second.id else second

    def one_done_one_running():
        s = study()
        states = [t.state.name for t in s.trials] if s else []
        return states.count("COMPLETE") >= 1 and "RUNNING" in states

    wait_until(one_done_one_running, 400, "a trial COMPLETE and the next RUNNING", 0.5)
    orchestrator = flow_run_state(winner.id)
    assert orchestrator.state.is_running(), orchestrator.state
    before = {t.number: t.values for t in study().trials if t.state.name == "COMPLETE"}
    flow_pid = int(str(orchestrator.infrastructure_pid).rsplit(":", 1)[-1])
    assert parent_of(flow_pid) == prefect_api["sweeper"].pid
    local_stack.signal_groups(local_stack.tree_groups([prefect_api["sweeper"].pid]), signal.SIGKILL)
    killed_at = time.monotonic()
    prefect_api["sweeper"] = prefect_api["start_sweeper"]()

    rerun = sweep_flow_run(params)
    final = wait_until(lambda: (r := flow_run_state(rerun.id)).state.is_final() and r, 600, "the rerun to end", 2.0)
    assert final.state.is_completed(), final.state
    trials = study().trials
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") == 3 and "RUNNING" not in states, states
    for number, values in before.items():   # nothing finished was lost or told again
        assert trials[number].state.name == "COMPLETE" and trials[number].values == values
    for t in trials:
        if t.state.name == "FAIL":   # only the trial in flight at the kill, failed as stale (and re-run)
            assert t.user_attrs.get("stale") is True, t.user_attrs
    # The killed sweep's own flow run does not stay RUNNING: the zombie automation crashes it once its heartbeats
    # (every 30 s, prefect.yaml) have stopped for 90 s.
    zombie = wait_until(lambda: (r := flow_run_state(winner.id)).state.is_final() and r,
                        max(10.0, 200 - (time.monotonic() - killed_at)), "the killed sweep's flow run to end", 2.0)
    assert zombie.state.type.value == "CRASHED" and "no heartbeat for 90 s" in zombie.state.message, zombie.state


def test_a_trial_for_a_worker_waits_for_its_mlflow_run_then_the_sweep_stops_with_one_sentence(tmp_path, monkeypatch):
    """The deployment runner needs every trial's MLflow run (the worker uploads into it): while the server does not
    answer, starting the run is retried; when it never answers, the trial is failed as stale (not counted) and the
    sweep stops with one sentence. Without a runner that needs it, the trial goes on untracked, as before."""
    import optuna

    from mnist_etc.sweep import SweepOptions
    from mnist_etc.sweep import orchestrator
    from mnist_etc.sweep.space import load_search_space
    from mnist_etc.tracking.sweep import SweepTracker

    monkeypatch.setattr(transport, "RETRY_SECONDS", 3.0)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    space = load_search_space(write_space(tmp_path / "spaces", "norun"))
    options = SweepOptions.build(storage=None, artifacts=tmp_path / "a", mlflow_uri=None)
    tracker = SweepTracker(options.mlflow_uri, options.artifacts)
    from mlflow import MlflowClient

    dead = f"http://{HOST}:{free_ports(1)[0]}"
    tracker.tracking_uri, tracker.client = dead, MlflowClient(dead)   # the server went away after the start
    study = optuna.create_study(directions=["maximize", "minimize"])
    asked = orchestrator._ask_one(study, space, options, tracker, "parent", space.distributions(), needs_run=False)
    assert asked is not None and asked[1].mlflow_run_id is None   # thread runners: trains untracked
    t0 = time.monotonic()
    with pytest.raises(UserError, match=rf"^the MLflow server at {dead} did not answer for 3 s and trials on workers "
                                        r"send their files through it; start it and rerun the sweep \(it resumes\)\.$"):
        orchestrator._ask_one(study, space, options, tracker, "parent", space.distributions(), needs_run=True)
    assert time.monotonic() - t0 < 30
    last = study.trials[-1]
    assert last.state.name == "FAIL" and last.user_attrs.get("stale") is True, (last.state, last.user_attrs)
