"""Shared fixtures: tiny real data and a tiny trained model (seconds, not minutes), and the one local Prefect
stack of the session (server, work pool, deployments, worker), shared by tests/test_deployments.py and
tests/browser/."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from mnist_etc.config import DataConfig, TrainConfig  # noqa: E402

TINY_DATA = DataConfig(train_size=1500)
TINY_TRAIN = TrainConfig(hid_dim=16, ae_epochs=5, clf_epochs=10, batch_size=32)

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("local_stack", REPO / "deployments" / "local_stack.py")
local_stack = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(local_stack)


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


def pytest_collection_modifyitems(session, config, items):
    """Tests that use the Prefect stack (tests/browser/, tests/test_deployments.py) run last, together: the
    stack's server and worker then run only while they are needed, not beside the rest of the suite."""
    items[:] = ([i for i in items if "stack" not in getattr(i, "fixturenames", ())]
                + [i for i in items if "stack" in getattr(i, "fixturenames", ())])
