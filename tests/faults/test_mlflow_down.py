"""Fault: the MLflow tracking server dies in the middle of a sweep.

Trials must still train, be told to Optuna and be chosen from; the sweep must not stall for minutes on
MLflow's own retry policy; winner.json must say what tracking is missing. Before the fix, the first
tracking call after the server died raised out of the sweep (after MLflow's default retries)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mnist_etc.ports import free_ports
from tests.test_sweep import study_of, write_space

BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_a_sweep_outlives_its_mlflow_server(tmp_path, monkeypatch):
    from mnist_etc.sweep import LocalRunner, SweepOptions, run_sweep
    from mnist_etc.sweep.space import load_search_space

    port = free_ports(1)[0]
    server = subprocess.Popen([str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'm.db'}",
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)   # the sweep's own patience, not MLflow's default, is tested

    class ServerDiesAfterFirstTrial(LocalRunner):
        def run_one(self, spec):
            outcome = super().run_one(spec)
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=30)
            return outcome

    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start")
        root = tmp_path / "artifacts"
        space = load_search_space(write_space(tmp_path, "untracked", trials=2))
        t0 = time.perf_counter()
        summary = run_sweep(space, SweepOptions.build(artifacts=root, mlflow_uri=f"http://127.0.0.1:{port}"),
                            ServerDiesAfterFirstTrial(1), log=lambda s: None)
        seconds = time.perf_counter() - t0
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
    assert [t.state.name for t in study_of("untracked", root).trials] == ["COMPLETE", "COMPLETE"]
    assert summary.counts["COMPLETE"] == 2 and summary.winner is not None
    missing = json.loads((root / "sweeps" / "untracked" / "winner.json").read_text())["mlflow"]["missing"]
    assert any(m.startswith("start of a trial run") for m in missing), missing
    # after the first unanswered call, the rest of the trial's calls are skipped, not retried one by one
    assert any("skipped, the tracking server did not answer" in m for m in missing), missing
    assert seconds < 150, f"{seconds:.0f} s: the sweep waited on MLflow's retries"
