"""Shared fixtures: tiny real data and a tiny trained model (seconds, not minutes), and the one local Prefect
stack of the session (server, work pool, deployments, worker), shared by tests/test_deployments.py and
tests/browser/."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from mnist_etc.config import DataConfig, TrainConfig  # noqa: E402

TINY_DATA = DataConfig(train_size=1500)
TINY_TRAIN = TrainConfig(hid_dim=16, ae_epochs=5, clf_epochs=10, batch_size=32)

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
_spec = importlib.util.spec_from_file_location("local_stack", REPO / "deployments" / "local_stack.py")
local_stack = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(local_stack)


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server (its test harness) for every in-process flow test of the session: a server
    start costs 15-30 s on 2 cores, so it is paid once."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline machine: no telemetry
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session")
def tiny_split():
    from mnist_etc.data import load_split

    return load_split(TINY_DATA)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_split) -> Path:
    """A trained (non-private) model directory, written by the real training code."""
    from mnist_etc.model_store import train_and_save

    out = tmp_path_factory.mktemp("models") / "tiny"
    train_and_save(TINY_TRAIN, tiny_split, out, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from mnist_etc.model_store import load_model

    return load_model(tiny_model_dir)


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """deployments/local_stack.py up on a free 127.0.0.1 port, once per session; down (and no process left
    behind) at the end. `env` talks to it: PREFECT_API_URL and PREFECT_HOME of the stack."""
    stack_dir = tmp_path_factory.mktemp("stack")
    state = local_stack.up(stack_dir, local_stack.free_port(), None)
    env = dict(os.environ, PREFECT_API_URL=state["api_url"], PREFECT_HOME=state["prefect_home"])
    yield {"dir": stack_dir, "state": state, "env": env, "ui_url": f"http://{local_stack.HOST}:{state['port']}"}
    pgids = local_stack.down(stack_dir)
    assert pgids and not any(local_stack.alive(p) for p in pgids), "the stack left processes behind"


@pytest.hookimpl(tryfirst=True)   # before xdist's own hook reads the groups
def pytest_collection_modifyitems(session, config, items):
    """Tests that use the Prefect stack (tests/browser/, tests/test_deployments.py) run last, together: the
    stack's server and worker then run only while they are needed, not beside the rest of the suite.

    Under pytest-xdist (`make test` runs two workers, `--dist loadgroup`), each session fixture would be built
    once per worker; the tests sharing the two expensive ones are kept on one worker each: the stack's users
    in group `stack`, the users of the temporary Prefect server in group `prefect-harness`, the users of
    tests/test_deployment_runner.py's work pool and MLflow server in group `trial-pool`."""
    items[:] = ([i for i in items if "stack" not in getattr(i, "fixturenames", ())]
                + [i for i in items if "stack" in getattr(i, "fixturenames", ())])
    for item in items:
        names = getattr(item, "fixturenames", ())
        group = ("stack" if "stack" in names else "prefect-harness" if "prefect_harness" in names
                 else "trial-pool" if {"trial_pool", "mlflow_server"} & set(names) else None)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture
def postgres_url():
    """A throwaway database on the machine's PostgreSQL (127.0.0.1:5432, trust auth), dropped afterwards."""
    psycopg2 = pytest.importorskip("psycopg2")
    name = f"mnist_etc_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=5)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at 127.0.0.1:5432 ({exc})")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def http_json(url: str, body: dict | None = None, timeout: float = 10) -> dict | list:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


# --------------------------------------------------------------------------------------------- the world

@pytest.fixture(scope="session")
def world(stack, tmp_path_factory) -> dict:
    """A 2-trial sweep of search_spaces/audit.yaml run through the session's Prefect server: Optuna storage
    and artifact store, MLflow store (parent run, nested trial runs, registered champion) and a finished
    Prefect flow run with its markdown and table artifacts, all under one temporary --artifacts root."""
    root = tmp_path_factory.mktemp("browser-world")
    done = subprocess.run([str(BIN / "mnist-etc"), "sweep", "--space", "search_spaces/audit.yaml", "--trials", "2",
                           "--artifacts", str(root)], cwd=REPO, env=stack["env"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    winner = json.loads((root / "sweeps" / "audit" / "winner.json").read_text())
    api = stack["state"]["api_url"]
    runs = http_json(f"{api}/flow_runs/filter", {"flows": {"name": {"any_": ["sweep"]}},
                                                  "flow_runs": {"name": {"any_": ["sweep-audit"]}},
                                                  "sort": "START_TIME_DESC", "limit": 1})
    assert runs and runs[0]["state_type"] == "COMPLETED", runs
    return {"root": root, "study": "audit", "winner": winner, "flow_run_id": runs[0]["id"],
            "ui_url": stack["ui_url"], "api_url": api}


@pytest.fixture(scope="session")
def champion(world) -> dict:
    """The session world's registered champion exported into the world's Triton repository by the real CLI."""
    root = world["root"]
    mlflow_uri = f"sqlite:///{root / 'mlflow.db'}"
    done = subprocess.run([str(BIN / "mnist-etc"), "export", "--winner", str(root / "sweeps" / "audit" / "winner.json"),
                           "--repository", str(root / "repo"), "--mlflow-tracking-uri", mlflow_uri],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"root": root, "mlflow_uri": mlflow_uri,
            "uri": f"models:/{world['winner']['mlflow']['registered_model']}@champion"}


def audit_params(champion: dict, canary: dict | None = None, **policy) -> str:
    """The nightly deployment's parameters: the audit policy is one nested mapping, validated by Prefect."""
    root = champion["root"]
    policy = {"attack": {"victims": 50, "n_iter": 2, "n_samples": 32, "n_best": 8}, "membership_samples": 50,
              **policy, **({"canary": canary} if canary else {})}
    return json.dumps({"champion": champion["uri"], "mlflow_tracking_uri": champion["mlflow_uri"],
                       "repository": str(root / "repo"), "audits_dir": str(root / "audits"), "policy": policy})


@pytest.fixture(scope="session")
def nightly_audit(stack, champion) -> dict:
    """One `prefect deployment run 'privacy-audit/nightly' --watch` of the champion through the stack's worker
    (a passing policy, the canary audit asked for): its CLI output, its report and its MLflow run, for the
    deployment test that judges the run and the browser test that opens its images in the MLflow UI."""
    done = subprocess.run([str(BIN / "prefect"), "deployment", "run", "privacy-audit/nightly", "--watch",
                           "--params", audit_params(champion, allow_non_private=True, leakage_bound=1.0,
                                                    membership_auc_bound=1.0, inconclusive="pass",
                                                    canary_audit=True, canary={"canaries": 200})],
                          cwd=REPO, env=stack["env"], capture_output=True, text=True, timeout=900)
    reports = sorted((champion["root"] / "audits").glob("*/audit.json"))
    return {"done": done, "report": reports[-1] if reports else None, "champion": champion}
