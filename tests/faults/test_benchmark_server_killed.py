"""Fault (issue 16): tritonserver SIGKILLed while `mnist-etc benchmark` measures a point, under the real CLI.

The embedded server is killed (SIGKILL to the tritonserver pid, found in /proc by its model repository) as soon
as perf_analyzer's first requests have reached it. The point being measured must become a failed row ("crash",
server restarted) and the run must go on and publish whole: results.csv, summary.md and best.json, with no
hidden staging directory left and no traceback. Every process is killed by pid if the test fails.

Before (the code of issue 14's start, run once with this test): exit 0, the killed point recorded as `crash`,
the server restarted, the next points measured, the run published whole; only the reason was vague: "tritonserver
died (exit code -9; last log line: ... Started Metrics Service ...)". After: the same, and the reason says
"tritonserver was killed by SIGKILL (its log: ...)". The run uses the default (adaptive) strategy.
"""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.faults.test_triton_faults import Cli, group_gone, kill_server_once_serving, tritonserver_of, visible

pytestmark = pytest.mark.slow

MODEL = "digits"   # the name requests_served() counts


@pytest.fixture()
def repository(tmp_path) -> Path:
    from mnist_etc.triton.repository import add_version
    from tests.onnx_models import tiny_onnx

    repo = tmp_path / "repo"
    add_version(repo, MODEL, tiny_onnx(tmp_path / "tiny.onnx"), {"source": "test"}, backends=("python",))
    return repo


def test_benchmark_whose_server_is_killed_records_the_point_and_publishes_whole(repository, tmp_path):
    artifacts = tmp_path / "artifacts"
    cli = Cli(["benchmark", "--model", MODEL, "--repository", str(repository), "--instance-count", "1,2",
               "--concurrency", "2", "--baseline", "defaults", "--measurement-interval-ms", "300",
               "--stability-percentage", "100", "--max-trials", "4", "--ceiling-seconds", "0.2", "--run", "killed",
               "--artifacts", str(artifacts), "--no-prefect", "--no-mlflow", "--no-write-best"], tmp_path)
    try:
        server = kill_server_once_serving(cli, repository, timeout=120)
        code, out, err = cli.wait(timeout=120)
        restarted = tritonserver_of(repository)
        if restarted:
            cli.servers.add(restarted["pid"])
    finally:
        cli.kill_all()
    assert code == 0, (code, out[-3000:], err[-3000:])
    assert "Traceback" not in out + err, err[-3000:]
    run_dir = artifacts / "benchmarks" / "killed"
    assert visible(artifacts / "benchmarks") == ["killed"]          # published whole, no staging left behind
    for name in ("results.csv", "summary.md", "best.json", "spec.json"):
        assert (run_dir / name).is_file(), name
    with open(run_dir / "results.csv") as f:
        rows = list(csv.DictReader(f))
    crashed = [r for r in rows if r["failure"] == "crash"]
    assert len(crashed) == 1 and crashed[0]["server_restarted"] == "True", rows
    assert "server crashed during the measurement: tritonserver was killed by SIGKILL" in crashed[0]["reason"], \
        crashed[0]["reason"]
    later = [r for r in rows if int(r["point"]) > int(crashed[0]["point"]) and r["status"] == "ok"]
    assert later, rows                                                  # measured on the restarted server
    assert group_gone(server["pid"]), "the killed server's Python stubs outlived the benchmark"
