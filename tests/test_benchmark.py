"""The benchmark against the real embedded Triton and the real perf_analyzer: tiny grids, short windows.

Failures are provoked for real: a KIND_GPU instance group (refused by Triton on this CPU-only machine), a
stability rule no measurement can meet (the points are recorded unsettled, with their medians), and a SIGKILL
of the server in the middle of a measurement. The default, adaptive strategy runs once on the real server;
the other tests pin `brute` so that their rows are exactly the grid's.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import threading
from pathlib import Path

import pytest

from mnist_etc.benchmark import RunOptions, resolve_spec, run_benchmark
from mnist_etc.triton.model_config import TritonModelConfig, parse_pbtxt
from tests.onnx_models import tiny_onnx

pytestmark = pytest.mark.slow

# Short windows and a loose stability rule: the test machine is shared, and these tests check the
# machinery (reloads, parsing, failure rows), not the figures.
FAST = dict(interval_ms=500, stability_percentage=100, max_trials=8, request_batch_size=2, strategy="brute")


@pytest.fixture()
def repository(tmp_path) -> Path:
    from mnist_etc.triton.repository import add_version

    repo = tmp_path / "repo"
    add_version(repo, "bench", tiny_onnx(tmp_path / "tiny.onnx"), {"source": "test"}, backends=("python",))
    return repo


def read_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "results.csv") as f:
        return list(csv.DictReader(f))


def test_tiny_grid_records_a_refused_point_and_picks_the_best(repository, tmp_path):
    """Two points: the repository's own config (the baseline) and a KIND_GPU one Triton refuses."""
    artifacts = tmp_path / "artifacts"
    spec = resolve_spec(None, model="bench", repository=str(repository), instance_kind=["KIND_CPU", "KIND_GPU"],
                        concurrency=[2], p99_budget_ms=10_000, **FAST).with_overrides(ceiling_seconds=0.5)
    out = run_benchmark(spec, RunOptions(run="tiny", artifacts=artifacts, mlflow_uri=f"sqlite:///{tmp_path}/ml.db"),
                        log=lambda _: None)
    run_dir = artifacts / "benchmarks" / "tiny"
    assert out.run_dir == run_dir
    rows = read_rows(run_dir)
    assert [(r["instance_kind"], r["baseline"], r["status"]) for r in rows] == \
        [("KIND_CPU", "True", "ok"), ("KIND_GPU", "False", "failed")]
    ok, refused = rows
    assert ok["config_verified"] == "True" and float(ok["throughput"]) > 0
    assert 0 < float(ok["p50_ms"]) <= float(ok["p99_ms"])
    assert ok["server_queue_ms"] != "" and ok["server_compute_infer_ms"] != ""
    assert float(ok["requests_per_second"]) == pytest.approx(float(ok["throughput"]) / 2, rel=1e-3)
    assert float(ok["in_process_images_per_second"]) > 0 and float(ok["serving_efficiency"]) > 0
    assert refused["failure"] == "load_refused" and "no GPUs are available" in refused["reason"]
    assert refused["throughput"] == ""
    # Analysis, reports and the candidate config in the repository.
    assert out.analysis.best.results == (out.results[0],) and out.summary["best_is_baseline"]
    summary = (run_dir / "summary.md").read_text()
    assert "## Best configuration" in summary and "no GPUs are available" in summary
    assert "--model-config-name=benchmark-tiny" in summary
    for name in ("throughput_vs_p99.png", "heatmap_instances_x_delay.png", "plots/config-00.png", "best.json",
                 "spec.json", "raw/point-000.csv", "raw/point-000.log"):
        assert (run_dir / name).is_file(), name
    assert "--concurrency-range 2:2" in (run_dir / "raw/point-000.log").read_text()
    candidate = repository / "bench" / "configs" / "benchmark-tiny.pbtxt"
    assert TritonModelConfig.from_proto(parse_pbtxt(candidate.read_text())).instance_kind == "KIND_CPU"
    assert not [p for p in (artifacts / "benchmarks").iterdir() if p.name.startswith(".")]   # no staging left
    # MLflow: the run with its metrics and files.
    from mlflow import MlflowClient

    run = MlflowClient(f"sqlite:///{tmp_path}/ml.db").get_run(out.mlflow_run_id)
    assert run.data.metrics["points_ok"] == 1 and run.data.metrics["points_failed"] == 1
    assert run.data.params["model"] == "bench"
    # Adopting: config.pbtxt becomes the best, the previous one is kept.
    from mnist_etc.benchmark.adopt import adopt_best

    adopted = adopt_best(run_dir)
    assert Path(adopted["backup"]).is_file()
    assert json.loads((run_dir / "best.json").read_text())["analysis"]["best"]["concurrency"] == 2


def test_adaptive_search_on_a_real_server_keeps_unsettled_points(repository, tmp_path):
    """The default strategy end to end, with a stability rule no window can meet: every point is recorded
    unsettled (medians and spread of its windows), the finalist and the baseline are re-measured, and the best
    rests on those re-measurements."""
    spec = resolve_spec(None, model="bench", repository=str(repository), instance_count=[1, 2], concurrency=[1, 2],
                        interval_ms=200, stability_percentage=0.001, max_trials=3, request_batch_size=1,
                        p99_budget_ms=1000, baseline="defaults",
                        strategy="adaptive:finalists=1,repeats=2").with_overrides(ceiling_seconds=0.2)
    out = run_benchmark(spec, RunOptions(run="adaptive", artifacts=tmp_path / "a", mlflow=False), log=lambda _: None)
    rows = read_rows(out.run_dir)
    measured = [r for r in rows if r["status"] == "ok"]
    assert measured and all(r["settled"] == "False" and r["windows"] == "3" and r["throughput_spread"] != ""
                            and float(r["p99_ms"]) > 0 and r["p50_ms"] == "" for r in measured)
    assert [r["phase"] for r in measured][:2] == ["screen", "screen"]           # each config at its top, c=2
    assert {r["concurrency"] for r in measured if r["phase"] == "screen"} == {"2"}
    confirm = [r for r in measured if r["phase"] == "confirm"]
    assert len(confirm) in (2, 4) and {r["repeat"] for r in confirm} == {"0", "1"}
    best = out.analysis.best
    assert best is not None and best.repeated and len(best.results) == 2 and out.summary["verdict"] == "met"
    summary = (out.run_dir / "summary.md").read_text()
    assert "## Final ranking (re-measured, interleaved)" in summary and "ok, unsettled" in summary
    assert out.summary["points_unsettled"] == len(measured) and out.summary["points_failed"] == 0
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert all("a lower concurrency is not expected to serve more" in r["reason"] for r in skipped)


def test_server_killed_mid_measurement_is_restarted(repository, tmp_path):
    """SIGKILL the whole server 1 s into the first point: that point fails as a crash, the next one is measured
    on a restarted server (after reloading its config)."""
    spec = resolve_spec(None, model="bench", repository=str(repository), instance_count=[2], concurrency=[1],
                        baseline="defaults", **FAST).with_overrides(ceiling_seconds=0.2)
    killed = []

    def kill_during_first_point(session, point, index, raw_dir):
        if index == 0:
            pgid = session.server.proc.pid
            threading.Timer(1.0, lambda: (killed.append(pgid), os.killpg(pgid, signal.SIGKILL))).start()
        return session.measure(point, index, raw_dir)

    out = run_benchmark(spec, RunOptions(run="crash", artifacts=tmp_path / "a", mlflow=False),
                        log=lambda _: None, measure_point=kill_during_first_point)
    assert killed
    first, second = read_rows(out.run_dir)
    assert (first["status"], first["failure"], first["server_restarted"]) == ("failed", "crash", "True")
    assert "server crashed during the measurement" in first["reason"]
    assert (second["status"], second["instance_count"], second["config_verified"]) == ("ok", "2", "True")
    assert out.summary["server_restarts"] == 1


def test_cli_against_an_external_server_restores_its_config(repository, tmp_path, capsys):
    """--url: the server belongs to someone else; the benchmark reconfigures it and then restores its own
    config.pbtxt. Runs through the CLI without Prefect or MLflow."""
    from mnist_etc.benchmark.reconfigure import ModelControl
    from mnist_etc.triton.server import ServerConfig, TritonServer
    from mnist_etc_cli.main import main

    cfg = ServerConfig(repository, model_control_mode="explicit", load_models=("bench",), log_dir=tmp_path / "logs")
    with TritonServer(cfg) as server:
        code = main(["benchmark", "--url", server.http_url, "--protocol", "http", "--model", "bench",
                     "--repository", str(repository), "--instance-count", "2", "--concurrency", "1",
                     "--measurement-interval-ms", "500", "--stability-percentage", "100", "--baseline", "current",
                     "--strategy", "brute",
                     "--run", "ext", "--artifacts", str(tmp_path / "a"), "--no-prefect", "--no-mlflow"])
        assert code == 0
        printed = capsys.readouterr().out
        assert "benchmark ext:" in printed and "results:" in printed
        rows = read_rows(tmp_path / "a" / "benchmarks" / "ext")
        assert [(r["instance_count"], r["protocol"], r["status"]) for r in rows] == [("1", "http", "ok"),
                                                                                     ("2", "http", "ok")]
        control = ModelControl(server.grpc_url, "grpc", "bench")
        assert control.loaded_config().instance_count == 1          # restored from the server's repository
        control.close()
        # A budget nothing can meet: the run is published, the verdict shows the best effort, exit status 1.
        code = main(["benchmark", "--url", server.http_url, "--protocol", "http", "--model", "bench",
                     "--repository", str(repository), "--concurrency", "1", "--measurement-interval-ms", "300",
                     "--stability-percentage", "100", "--p99-budget-ms", "0.001", "--strategy", "brute",
                     "--run", "ext-budget", "--artifacts", str(tmp_path / "a"), "--no-prefect", "--no-mlflow"])
        printed = capsys.readouterr().out
        assert code == 1, printed
        assert ("verdict: No configuration meets the p99 budget of 0.001 ms. Best effort (the lowest p99 measured): "
                "n=1") in printed and "nothing written to the model repository; exit status 1" in printed
        assert "No configuration meets" in (tmp_path / "a" / "benchmarks" / "ext-budget" / "summary.md").read_text()


def test_flow_publishes_a_table_artifact_and_its_progress(repository, tmp_path, prefect_harness):
    """The Prefect flow `benchmark`, parameterised as `--params` would (two points), with its table artifact
    and its progress artifact, updated as each point is measured."""
    from prefect.artifacts import Artifact

    from flows.benchmark import benchmark
    from mnist_etc.artifact_keys import artifact_key
    from tests.test_progress import progress_of_flow_run

    state = benchmark(overrides={"model": "bench", "repository": str(repository), "concurrency": "1,2",
                                 "interval_ms": 500, "stability_percentage": 100, "max_trials": 3,
                                 "strategy": "brute"},
                      options={"run": "flowtest", "artifacts": str(tmp_path / "a"), "mlflow": False},
                      return_state=True)
    assert state.result()["summary"]["points_ok"] == 2
    # _sync=True, as Prefect's own callers write it: Artifact.get guesses sync or async from the calling context,
    # and once returned a coroutine here (one clean-clone run of four, cause not found).
    artifact = Artifact.get(artifact_key("benchmark", "flowtest"), _sync=True)
    assert artifact is not None and artifact.type == "table"
    # Progress: created at 0, then the plan (0 of 2), each point (1 of 2, 2 of 2), the end of the measuring and
    # the published run; 50 shows it moved while the run measured, not only once at the end.
    progress, updates = progress_of_flow_run(state.state_details.flow_run_id, at_least=5)
    assert progress.key == "benchmark-flowtest-progress" and progress.type == "progress" and progress.data == 100
    assert updates == [0, 50, 100, 100, 100]
    assert "percent of the planned measurements made" in progress.description
