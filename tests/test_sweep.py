"""Sweeps with real Prefect (its test harness), real Optuna storages (SQLite, PostgreSQL), real MLflow
stores and real training on tiny data: end to end, resume after a kill, the dashboard reading during
a sweep, and the pieces (storage design, winner policy, study checks) on their own."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from mnist_etc.audit.attacks.config import AttackConfig
from mnist_etc.config import DataConfig, TrainConfig
from mnist_etc.errors import UserError
from mnist_etc.ports import free_ports
from mnist_etc.sweep.space import load_search_space

ROOT = Path(__file__).resolve().parents[1]

TINY_SPACE = """
study: {study}
sampler: {{name: random, seed: 1}}
trials: {trials}
parallelism: {parallelism}
stale_trial_retries: 1
params:
  hid_dim: {{type: int, low: 4, high: 16, log: true}}
  ae_noise_multiplier: {{type: categorical, choices: [0.0, 1.0]}}
fixed: {{ae_epochs: 1, clf_epochs: 2, batch_size: 32}}
attack: {{victims: 3, n_iter: 8, n_samples: 32, n_best: 8}}
data: {{train_size: 300}}
winner: {{max_leakage: 0.9, max_epsilon: null, fallback: lowest_leakage}}
"""


def write_space(directory: Path, study: str, trials: int = 3, parallelism: int = 1) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{study}.yaml"
    path.write_text(textwrap.dedent(TINY_SPACE.format(study=study, trials=trials, parallelism=parallelism)))
    return path


@pytest.fixture(scope="session")
def sweep_root(tmp_path_factory) -> Path:
    """One artifacts root for the session: studies share its Optuna SQLite and MLflow stores, as a
    user's sweeps do (and MLflow's schema set-up is paid once)."""
    return tmp_path_factory.mktemp("sweeps")


def study_of(name: str, root: Path):
    import optuna

    from mnist_etc.sweep.storage import default_storage_url, open_storage

    return optuna.load_study(study_name=name, storage=open_storage(default_storage_url(root)))


def states(study) -> list[str]:
    return [t.state.name for t in sorted(study.trials, key=lambda t: t.number)]


# ------------------------------------------------------------------------------ end to end, Prefect


@pytest.mark.slow
def test_smoke_sweep_end_to_end_with_prefect(prefect_harness, sweep_root, tmp_path, monkeypatch):
    from mlflow import MlflowClient
    from optuna.artifacts import get_all_artifact_meta
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, TaskRunFilter, TaskRunFilterName

    from flows.sweep import sweep
    from mnist_etc.model_store import load_model
    from mnist_etc.tracking.layout import default_tracking_uri
    from tests.test_progress import progress_of_flow_run

    space = write_space(tmp_path, "e2e", trials=2, parallelism=2)
    state = sweep(space=str(space), artifacts=str(sweep_root), return_state=True)
    result = state.result()
    assert result["counts"]["COMPLETE"] == 2 and result["ran"] == 2

    study = study_of("e2e", sweep_root)
    assert states(study) == ["COMPLETE"] * 2
    study_dir = sweep_root / "sweeps" / "e2e"
    for t in study.trials:
        assert len(t.values) == 2 and 0 <= t.values[0] <= 1
        for key in ("epsilon", "ssim", "psnr", "train_seconds", "attack_seconds", "trial_seconds", "model_dir",
                    "trial_dir", "mlflow_run_id"):
            assert key in t.user_attrs, key
        tdir = Path(t.user_attrs["trial_dir"])
        assert tdir == study_dir / f"trial-{t.number}"
        for f in ("config.json", "outcome.json", "model/model.json", "model/encoder.weights.h5",
                  "attack/attack.json", "images/attack_grid.png", "images/autoencoder_grid.png"):
            assert (tdir / f).is_file(), f
        metas = get_all_artifact_meta(t, storage=study._storage)  # what the dashboard shows
        assert sorted(m.filename for m in metas) == ["attack_grid.png", "autoencoder_grid.png"]
        assert all((sweep_root / "optuna-artifacts" / m.artifact_id).is_file() for m in metas)

    # MLflow: one parent run, a nested run per trial with params, per-epoch metrics, objectives, artifacts.
    client = MlflowClient(default_tracking_uri(sweep_root))
    parent = client.get_run(study.user_attrs["mlflow_parent_run_id"])
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 2
    for run in children:
        assert run.info.status == "FINISHED"
        assert {"hid_dim", "ae_noise_multiplier", "searched.hid_dim"} <= set(run.data.params)
        assert {"test_accuracy", "excess_cosine", "excess_cosine_low", "nonmember_excess_cosine", "ssim"} <= set(
            run.data.metrics)
        # a trial attacks held-out non-members only: no statistic of a training member is published or steers
        assert not any(k.startswith("member_") for k in run.data.metrics), sorted(run.data.metrics)
        assert [m.step for m in client.get_metric_history(run.info.run_id, "classifier.val_accuracy")] == [0, 1]
        assert len(client.get_metric_history(run.info.run_id, "autoencoder.val_loss")) == 1
        if run.data.params["ae_noise_multiplier"] != "0.0":  # a private stage logs no training-split loss
            assert client.get_metric_history(run.info.run_id, "autoencoder.loss") == []
        assert "model/model.json" in [a.path for a in client.list_artifacts(run.info.run_id, "model")]
        assert "epsilon" in run.data.tags

    # Winner: policy applied, registered with alias champion, winner.json loadable.
    winner = json.loads((study_dir / "winner.json").read_text())
    for key in ("model_dir", "study", "trial", "values", "params", "epsilon", "mlflow"):
        assert key in winner, key
    version = client.get_model_version_by_alias(winner["mlflow"]["registered_model"], "champion")
    assert version.version == winner["mlflow"]["version"] and version.run_id == winner["mlflow"]["run_id"]
    assert load_model(winner["model_dir"]).config.hid_dim == winner["params"]["hid_dim"]
    # The champion is a real MLflow model: onnx flavour with its signature, loadable by pyfunc, and its logits
    # are ONNX Runtime's (and TensorFlow's) on real test digits; the Keras source stays the run's model/.
    import mlflow.artifacts
    import mlflow.models
    import mlflow.pyfunc
    import onnxruntime

    from mnist_etc.data import load_split

    uri = f"models:/{winner['mlflow']['registered_model']}@champion"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", default_tracking_uri(sweep_root))   # restored after the test
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", default_tracking_uri(sweep_root))
    info = mlflow.models.get_model_info(uri)
    assert {"onnx", "python_function"} <= set(info.flavors)
    sig = info.signature.to_dict()
    assert json.loads(sig["inputs"]) == [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 28, 28, 1]},
                                          "name": "input"}]
    assert json.loads(sig["outputs"])[0]["tensor-spec"] == {"dtype": "float32", "shape": [-1, 10]}
    stored = load_model(winner["model_dir"])
    x = load_split(stored.data_config).x_test[:64]
    logits = mlflow.pyfunc.load_model(uri).predict(x)["logits"]
    local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp_path / "champion"))
    ort = onnxruntime.InferenceSession(str(Path(local) / "model.onnx"), providers=["CPUExecutionProvider"])
    assert np.array_equal(logits, ort.run(["logits"], {"input": x})[0])
    assert np.abs(logits - stored.networks.full_model()(x).numpy()).max() <= 1e-4
    assert version.tags["mnist_etc.keras_source"] == "model"
    assert (study_dir / "pareto.png").stat().st_size > 10_000
    summary_md = (study_dir / "summary.md").read_text()
    assert "![Pareto front" in summary_md and "(pareto.png)" in summary_md
    assert f"http://127.0.0.1:8080/dashboard/studies/{study._study_id})" in summary_md
    assert f"/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id})" in summary_md
    assert len((study_dir / "trials.csv").read_text().strip().splitlines()) == 3

    # Prefect: one task run per trial, and the summary artifact.
    with get_client(sync_client=True) as prefect:
        runs = prefect.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="e2e-trial-")))
        assert sorted(r.name for r in runs) == ["e2e-trial-0", "e2e-trial-1"]
        assert all(r.state.is_completed() for r in runs)
        arts = prefect.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["sweep-e2e"])))
        assert arts and "Pareto front" in arts[0].data and "](data:image/png;base64," in arts[0].data
        (table,) = prefect.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["sweep-e2e-trials"])))
        assert table.type == "table" and len(json.loads(table.data)) == 2
    # The progress artifact: at 0 from the start (0 of 2 finished), 50 when the first trial finished, 100 at the
    # second and again once the reports are written: updated as trials finished, not once at the end.
    progress, updates = progress_of_flow_run(state.state_details.flow_run_id, at_least=4)
    assert progress.key == "sweep-e2e-progress" and progress.type == "progress" and progress.data == 100
    assert updates == [0, 50, 100, 100]

    # Rerunning continues the study: nothing repeated, one more trial when more are asked for (this time
    # on the process-pool task runner, whose worker must report to the same Prefect API).
    assert sweep(space=str(space), artifacts=str(sweep_root))["ran"] == 0
    again = sweep(space=str(space), trials=3, artifacts=str(sweep_root), task_runner="processes")
    assert again["ran"] == 1
    study = study_of("e2e", sweep_root)
    assert states(study) == ["COMPLETE"] * 3
    with get_client(sync_client=True) as prefect:
        (run,) = prefect.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="e2e-trial-2")))
        assert run.state.is_completed()
    assert len(client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")) == 3


@pytest.mark.slow
def test_prefect_runner_returns_a_failed_task_as_the_trial_result(prefect_harness, tmp_path):
    from prefect import flow
    from prefect.task_runners import ThreadPoolTaskRunner

    from mnist_etc.sweep.trial import TrialSpec
    from runners.task_runner import PrefectTrialRunner

    @flow
    def one_batch(specs: list) -> list:
        with ThreadPoolTaskRunner(max_workers=2) as runner:
            futures = [PrefectTrialRunner(runner).submit(spec) for spec in specs]
            return [f"{type(f.exception()).__name__}: {f.exception()}" for f in futures]

    missing = tmp_path / "missing.npz"
    bad = TrialSpec(study="x", number=0, params={"hid_dim": 8}, train=TrainConfig(hid_dim=8),
                    data=DataConfig(data=str(missing)), attack=AttackConfig(), trial_dir=str(tmp_path / "trial-0"),
                    objectives=("test_accuracy", "direct_cosine"))
    (result,) = one_batch([bad])
    assert result.startswith("UserError: ") and str(missing) in result, result
    assert not (tmp_path / "trial-0").exists()  # nothing half-written


# ------------------------------------------------------------------------- failures, kills, resume


def one_trial_crashes():
    """Real trials on a real LocalRunner with two slots, except that trial #1 raises as a crashing training
    would, trial #2 comes back lost (as from a killed worker), and trial #0 holds on until trial #2 has been
    submitted: that only happens if the orchestrator refills the slot trial #1 freed while #0 still runs (a batch
    would wait for #0 first, and #0 would fail)."""
    import threading

    from mnist_etc.sweep import LocalRunner
    from mnist_etc.sweep.runner import TrialLost

    class OneTrialCrashes(LocalRunner):
        def __init__(self):
            super().__init__(2)
            self.third_submitted = threading.Event()

        def submit(self, spec):
            if spec.number == 2:
                self.third_submitted.set()
            return super().submit(spec)

        def run_one(self, spec):
            if spec.number == 1:
                raise RuntimeError("training crashed")
            if spec.number == 2:
                raise TrialLost("trial #2's worker was killed")
            if spec.number == 0 and not self.third_submitted.wait(timeout=120):
                raise AssertionError("trial #2 was not started while trial #0 ran: the slot was not refilled")
            return super().run_one(spec)

    return OneTrialCrashes()


@pytest.mark.slow
def test_a_failing_trial_is_told_fail_a_lost_one_is_retried_and_the_sweep_goes_on(sweep_root, tmp_path):
    from mnist_etc.sweep import SweepOptions, run_sweep

    space = load_search_space(write_space(tmp_path, "crash", trials=3, parallelism=2))
    heard: list[tuple[int, int | None, str]] = []
    summary = run_sweep(space, SweepOptions.build(artifacts=sweep_root), one_trial_crashes(), log=lambda s: None,
                        on_progress=lambda *call: heard.append(call))
    study = study_of("crash", sweep_root)
    # The crash counts as one of the 3 trials; the lost trial does not: it is failed as stale and re-run as #3.
    assert states(study) == ["COMPLETE", "FAIL", "FAIL", "COMPLETE"]
    assert study.trials[1].user_attrs["error"] == "RuntimeError: training crashed"
    assert study.trials[2].user_attrs["stale"] is True and "stale" not in study.trials[1].user_attrs
    assert study.trials[3].user_attrs["retry_of"] == 2 and study.trials[3].params == study.trials[2].params
    assert not (sweep_root / "sweeps" / "crash" / "trial-1").exists()
    assert summary.counts["FAIL"] == 2 and summary.counts["COMPLETE"] == 2 and summary.winner is not None
    # Progress heard at the start and per finished trial (the crash counts, the lost trial does not), each with
    # the line the log shows.
    assert [(done, total) for done, total, _ in heard] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    # #0 and its neighbour #3 run side by side, so either may finish last.
    assert heard[0][2].startswith("study crash created")
    finished = [line.split(":")[0] for _, _, line in heard[1:]]
    assert sorted(finished) == ["trial 1/3 (#1) FAIL", "trial 2/3 (#0) COMPLETE", "trial 3/3 (#3) COMPLETE"] \
        or sorted(finished) == ["trial 1/3 (#1) FAIL", "trial 2/3 (#3) COMPLETE", "trial 3/3 (#0) COMPLETE"], finished


@pytest.mark.slow
def test_resume_recovers_finished_work_and_retries_killed_trials(sweep_root, tmp_path):
    """A sweep killed with one trial published-but-not-told and one mid-training: the next start tells
    the first from its outcome.json, fails and retries the second, and repeats nothing."""

    from mnist_etc.sweep import LocalRunner, SweepOptions, run_sweep
    from mnist_etc.sweep.storage import open_storage
    from mnist_etc.sweep.trial import TrialSpec, read_outcome, run_trial

    space = load_search_space(write_space(tmp_path, "resume", trials=1))
    options = SweepOptions.build(artifacts=sweep_root)
    run_sweep(space, options, LocalRunner(1), log=lambda s: None)
    study = study_of("resume", sweep_root)
    first = study.trials[0]
    assert first.state.name == "COMPLETE"

    # What a killed orchestrator leaves: #1 ran to the end (trial-1/ published) but was never told; #2 was
    # asked and never finished.
    import optuna

    study = optuna.load_study(study_name="resume", storage=open_storage(options.storage_url))
    t1 = study.ask(space.distributions())
    spec = TrialSpec(study="resume", number=t1.number, params=t1.params, train=space.train_config(t1.params),
                     data=space.data, attack=space.attack,
                     trial_dir=str(options.study_dir("resume") / f"trial-{t1.number}"),
                     objectives=("test_accuracy", "direct_cosine"))
    published = run_trial(spec)
    t2 = study.ask(space.distributions())
    (options.study_dir("resume") / f".trial-{t2.number}.partial-xyz").mkdir()  # its staging dir
    assert states(study) == ["COMPLETE", "RUNNING", "RUNNING"]

    logs: list[str] = []
    summary = run_sweep(space.with_overrides(trials=3), options, LocalRunner(1), log=logs.append)
    study = study_of("resume", sweep_root)
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]
    assert trials[0].datetime_complete == first.datetime_complete and trials[0].values == first.values
    assert trials[1].values == published.values == read_outcome(Path(spec.trial_dir)).values
    assert trials[2].user_attrs["stale"] is True and "stale" in trials[2].user_attrs["error"]
    assert trials[3].params == trials[2].params and trials[3].user_attrs["retry_of"] == 2
    assert summary.settled == {"recovered": 1, "failed": 1, "retried": 1} and summary.ran == 1
    assert not list(options.study_dir("resume").glob(".trial-*"))
    assert any("recovered" in line for line in logs) and any("queued a retry" in line for line in logs)


@pytest.mark.slow
def test_resume_after_a_real_kill(sweep_root, tmp_path):
    """SIGKILL the sweep process while a trial runs, then rerun: completed trials stay as they were,
    the killed trial is failed (or recovered if it had published) and retried, the study completes."""
    import optuna

    from mnist_etc.sweep import LocalRunner, SweepOptions, run_sweep
    from mnist_etc.sweep.storage import default_storage_url, open_storage

    space_path = write_space(tmp_path, "killed", trials=2)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "mnist_etc_cli.main", "sweep", "--space", str(space_path),
                             "--no-prefect", "--artifacts", str(sweep_root)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    storage = None
    try:
        deadline = time.time() + 300   # generous: a loaded 2-core machine starts TensorFlow slowly
        while time.time() < deadline:
            time.sleep(0.2)
            if proc.poll() is not None:
                pytest.fail("the sweep ended before it could be killed")
            if storage is None:
                try:
                    storage = open_storage(default_storage_url(sweep_root))
                    study = optuna.load_study(study_name="killed", storage=storage)
                except (KeyError, UserError):
                    storage = None
                    continue
            now = study.get_trials(deepcopy=False)
            if any(t.state.name == "COMPLETE" for t in now) and any(t.state.name == "RUNNING" for t in now):
                break
        else:
            pytest.fail("no trial was running within 300 s")
        time.sleep(0.5)  # into the running trial's training
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = {t.number: t for t in study.get_trials() if t.state.name == "COMPLETE"}
    assert before and any(t.state.name == "RUNNING" for t in study.get_trials())

    summary = run_sweep(load_search_space(space_path), SweepOptions.build(artifacts=sweep_root), LocalRunner(1),
                        log=lambda s: None)
    after = {t.number: t for t in study_of("killed", sweep_root).trials}
    assert not [t for t in after.values() if t.state.name == "RUNNING"]
    for n, t in before.items():  # nothing completed was lost or redone
        assert after[n].state.name == "COMPLETE" and after[n].datetime_complete == t.datetime_complete
    counted = [t for t in after.values() if t.state.name == "COMPLETE" or not t.user_attrs.get("stale")]
    assert len(counted) == 2 and summary.counts["COMPLETE"] == 2
    for t in after.values():
        if t.user_attrs.get("stale"):
            retries = [r for r in after.values() if r.user_attrs.get("retry_of") == t.number]
            assert len(retries) == 1 and retries[0].params == t.params and retries[0].state.name == "COMPLETE"


# -------------------------------------------------------------------------------------- PostgreSQL


@pytest.mark.slow
def test_postgresql_storage(postgres_url, sweep_root, tmp_path):
    import optuna

    from mnist_etc.sweep import LocalRunner, SweepOptions, run_sweep
    from mnist_etc.sweep.storage import open_storage

    space = load_search_space(write_space(tmp_path, "pg", trials=2, parallelism=2))
    summary = run_sweep(space, SweepOptions.build(storage=postgres_url, artifacts=sweep_root), LocalRunner(2),
                        log=lambda s: None)
    assert summary.counts["COMPLETE"] == 2 and summary.storage == postgres_url
    study = optuna.load_study(study_name="pg", storage=open_storage(postgres_url))
    assert states(study) == ["COMPLETE", "COMPLETE"]
    assert json.loads((sweep_root / "sweeps" / "pg" / "winner.json").read_text())["storage"] == postgres_url


def test_unreachable_or_unsupported_storage_is_one_sentence(tmp_path, capsys):
    from mnist_etc_cli.main import main

    space = write_space(tmp_path, "bad", trials=1)
    for url, phrase in (("mysql://u@localhost/db", "'mysql', which is not supported"),
                        ("postgresql://nobody:secret@127.0.0.1:1/x", "could not open study storage"),
                        ("sqlite://", "names no file")):
        assert main(["sweep", "--space", str(space), "--storage", url, "--artifacts", str(tmp_path / "a")]) == 2
        err = capsys.readouterr().err
        assert phrase in err and err.count("\n") == 1, err
        assert "secret" not in err  # passwords are masked


# ------------------------------------------------------------------------- storage design, dashboard


def test_an_open_reader_does_not_block_the_sweeps_writes(tmp_path):
    """Why the dashboard cannot break a sweep: in WAL mode a reader mid-transaction does not stop the
    writer's commits; in SQLite's default rollback-journal mode the same reader makes them fail."""
    import optuna

    from mnist_etc.sweep.storage import open_storage

    url = f"sqlite:///{tmp_path / 'wal.db'}"
    study = optuna.create_study(study_name="s", storage=open_storage(url), directions=["maximize", "minimize"])
    reader = sqlite3.connect(tmp_path / "wal.db")
    reader.execute("BEGIN")
    reader.execute("SELECT * FROM trials").fetchall()  # holds a read snapshot, as a slow dashboard query does
    t0 = time.perf_counter()
    for _ in range(3):
        study.tell(study.ask(), [0.5, 0.5])
    assert time.perf_counter() - t0 < 5
    reader.rollback()
    assert sqlite3.connect(tmp_path / "wal.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    plain = tmp_path / "rollback.db"  # the failure the design avoids
    writer = sqlite3.connect(plain, timeout=0.2)
    writer.execute("CREATE TABLE t (x)")
    writer.commit()
    reader = sqlite3.connect(plain)
    reader.execute("BEGIN")
    reader.execute("SELECT * FROM t").fetchall()
    writer.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        writer.commit()


@pytest.mark.slow
def test_dashboard_reads_while_a_sweep_writes(tmp_path):
    from mnist_etc.sweep import LocalRunner, SweepOptions, run_sweep
    from mnist_etc.sweep.storage import open_storage

    root = tmp_path / "artifacts"
    options = SweepOptions.build(artifacts=root)
    open_storage(options.storage_url)  # the file exists before the dashboard starts
    port = free_ports(1)[0]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    dash = subprocess.Popen([sys.executable, "-m", "mnist_etc_cli.main", "dashboard", "--artifacts", str(root),
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    stop = threading.Event()
    seen = {"ok": 0, "errors": []}

    def get(path: str) -> bytes:
        with urllib.request.urlopen(base + path, timeout=10) as r:
            return r.read()

    def poll() -> None:  # what a browser tab on the study does, only faster
        while not stop.is_set():
            try:
                for s in json.loads(get("/api/studies"))["study_summaries"]:
                    get(f"/api/studies/{s['study_id']}?after=0")
                    seen["ok"] += 1
            except urllib.error.HTTPError as exc:
                seen["errors"].append(f"HTTP {exc.code}: {exc.read()[:300]!r}")
            except Exception as exc:  # anything else is a finding too, not a dead poller
                seen["errors"].append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                get("/api/meta")
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        else:
            pytest.fail("dashboard did not start: " + dash.stdout.read1().decode(errors="replace"))
        poller.start()
        space = load_search_space(write_space(tmp_path, "watched", trials=2))
        summary = run_sweep(space, options, LocalRunner(1), log=lambda s: None)
        time.sleep(0.5)
        stop.set()
        poller.join(timeout=15)
        assert summary.counts["COMPLETE"] == 2
        assert seen["ok"] >= 20 and not seen["errors"], seen

        study_id = next(s["study_id"] for s in json.loads(get("/api/studies"))["study_summaries"]
                        if s["study_name"] == "watched")
        for _ in range(60):  # the dashboard caches trial lists for a few seconds
            detail = json.loads(get(f"/api/studies/{study_id}?after=0"))
            if [t["state"] for t in detail["trials"]] == ["Complete"] * 2:
                break
            time.sleep(0.5)
        assert [t["state"] for t in detail["trials"]] == ["Complete"] * 2
        # the objectives carry their metric names, so the dashboard does not say "Objective 0 / 1"
        assert detail["objective_names"] == ["val_accuracy", "excess_cosine"]
        trial = detail["trials"][0]
        artifact = trial["artifacts"][0]
        png = get(f"/artifacts/{study_id}/{trial['trial_id']}/{artifact['artifact_id']}")
        assert png[:8] == b"\x89PNG\r\n\x1a\n"  # the trial's images are served
        assert dash.poll() is None
    finally:
        stop.set()
        dash.send_signal(signal.SIGINT)
        try:
            dash.wait(timeout=10)
        except subprocess.TimeoutExpired:
            dash.kill()


def assert_busy_port_refused(argv: list[str], capsys) -> None:
    """`mnist-etc <argv> --port P` with P held by another socket: exit 2 and one sentence naming the port."""
    import socket

    from mnist_etc_cli.main import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main([*argv, "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is in use; pass --port with a free one" in err and "Traceback" not in err


def test_dashboard_refuses_a_missing_storage_a_missing_study_and_a_busy_port(tmp_path, capsys):
    from mnist_etc.sweep import SweepOptions
    from mnist_etc.sweep.storage import open_storage
    from mnist_etc_cli.main import main

    assert main(["dashboard", "--artifacts", str(tmp_path / "none")]) == 2
    assert "no study storage" in capsys.readouterr().err
    open_storage(SweepOptions.build(artifacts=tmp_path).storage_url)
    assert main(["dashboard", "--artifacts", str(tmp_path), "--study", "nope", "--port", str(free_ports(1)[0])]) == 2
    assert "study 'nope' is not in" in capsys.readouterr().err
    assert_busy_port_refused(["dashboard", "--artifacts", str(tmp_path)], capsys)


def test_mlflow_ui_refuses_a_missing_store_and_a_busy_port(tmp_path, capsys):
    from mlflow import MlflowClient

    from mnist_etc_cli.main import main

    assert main(["ui", "--artifacts", str(tmp_path / "none")]) == 2
    assert "no MLflow store at" in capsys.readouterr().err
    MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").create_experiment("x")
    assert_busy_port_refused(["ui", "--artifacts", str(tmp_path)], capsys)


# ------------------------------------------------------------------------- study checks, winner policy


def test_study_checks(tmp_path):
    from mnist_etc.sweep.storage import open_storage
    from mnist_etc.sweep.locks import study_lock
    from mnist_etc.sweep.study import open_study

    space = load_search_space(write_space(tmp_path, "checked"))
    url = f"sqlite:///{tmp_path / 'o.db'}"
    storage = open_storage(url)
    study_dir = tmp_path / "sweeps" / "checked"
    study, created = open_study(space, storage, study_dir, url)
    assert created and open_study(space.with_overrides(trials=9), storage, study_dir, url)[1] is False
    # the dashboard names the objectives after the metrics, not "Objective 0 / 1"
    assert study.metric_names == space.objective_names == ["val_accuracy", "excess_cosine"]

    changed = space.replace(fixed={**space.fixed, "ae_epochs": 2})
    with pytest.raises(UserError, match="different search space \\(fixed differ\\)"):
        open_study(changed, storage, study_dir, url)

    other = open_storage(f"sqlite:///{tmp_path / 'other.db'}")
    (study_dir / "trial-0").mkdir(parents=True)
    with pytest.raises(UserError, match="holds trials of an earlier study"):
        open_study(space, other, study_dir, "other")

    with study_lock(study_dir):
        with pytest.raises(UserError, match="being swept by another process"):
            with study_lock(study_dir):
                pass
    with study_lock(study_dir):  # released
        pass


def test_preflight_refuses_a_delta_of_one_over_n_or_more_fixed_or_searched(tmp_path):
    from mnist_etc.sweep.orchestrator import preflight

    space = load_search_space(write_space(tmp_path, "delta"))
    preflight(space)  # the default 1e-5 is below 1/300
    with pytest.raises(UserError, match=r"delta 0.01 is not below 1/n = 0.00333 for the 300 training examples"):
        preflight(space.replace(fixed={**space.fixed, "delta": 0.01}))
    searched = write_space(tmp_path, "searched-delta")
    searched.write_text(searched.read_text().replace(
        "params:\n", "params:\n  delta: {type: float, low: 1.0e-6, high: 0.01, log: true}\n"))
    with pytest.raises(UserError, match=r"delta 0.01 is not below 1/n"):
        preflight(load_search_space(searched))


def test_winner_policy_and_pareto_front():
    import math

    from mnist_etc.sweep.space import WinnerPolicy
    from mnist_etc.sweep.winner import Candidate, choose_winner, pareto_front

    c = [Candidate(0, 0.90, 0.70, math.inf, {}, {}), Candidate(1, 0.85, 0.45, 3.0, {}, {}),
         Candidate(2, 0.80, 0.40, 1.0, {}, {}), Candidate(3, 0.70, 0.50, 8.0, {}, {})]
    assert [x.number for x in pareto_front(c)] == [2, 1, 0]
    choice = choose_winner(c, WinnerPolicy(max_leakage=0.5, max_epsilon=5))
    assert choice.winner.number == 1 and choice.qualified
    assert choose_winner(c, WinnerPolicy(max_leakage=0.5, max_epsilon=2)).winner.number == 2
    none_ok = WinnerPolicy(max_leakage=0.1)
    assert choose_winner(c, none_ok).winner.number == 2 and not choose_winner(c, none_ok).qualified
    assert choose_winner(c, WinnerPolicy(max_leakage=0.1, fallback="highest_accuracy")).winner.number == 0
    assert choose_winner(c, WinnerPolicy(max_leakage=0.1, fallback="none")).winner is None
    assert choose_winner([], WinnerPolicy()).winner is None


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random", "grid"])
def test_each_sampler_asks_and_tells_in_batches(tmp_path, sampler):
    """Each sampler under ask/tell with the space's distributions (no training: values are made up).
    The grid sampler visits every point once and its last tell does not raise (study.stop() would)."""
    import optuna

    from mnist_etc.sweep.space import parse_search_space
    from mnist_etc.sweep.study import make_sampler

    raw = {"study": "s", "trials": 4, "sampler": {"name": sampler, "seed": 3},
           "params": {"hid_dim": {"type": "categorical", "choices": [8, 16]},
                      "ae_noise_multiplier": {"type": "float", "low": 0.0, "high": 1.0, "step": 1.0}}}
    if sampler == "nsga2":
        raw["sampler"]["options"] = {"population_size": 2}
    space = parse_search_space(raw)
    study = optuna.create_study(directions=space.directions, sampler=make_sampler(space, 3))
    for _ in range(2):
        batch = [study.ask(space.distributions()) for _ in range(2)]
        for t in batch:
            study.tell(t, [t.params["hid_dim"] / 16, t.params["ae_noise_multiplier"]])
    assert len(study.trials) == 4 and all(t.state.name == "COMPLETE" for t in study.trials)
    if sampler == "grid":
        assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 4


PRIVATE_SPACE = """
study: {study}
sampler: random
search_accounting: private
trial_count: geometric
trials: 2
parallelism: 1
params:
  hid_dim: {{type: categorical, choices: [4, 8]}}
  ae_noise_multiplier: {{type: categorical, choices: [1.0, 1.5]}}
fixed: {{ae_epochs: 1, clf_epochs: 2, batch_size: 32, clf_noise_multiplier: 1.0}}
attack: {{victims: 3, n_iter: 4, n_samples: 32, n_best: 8}}
data: {{train_size: 300}}
winner: {{max_leakage: null, max_epsilon: 60, fallback: highest_accuracy}}
"""


@pytest.mark.slow
def test_a_private_random_search_runs_its_secret_count_and_accounts_the_release(sweep_root, tmp_path, capsys):
    """sampler: random without a seed: K drawn in secret and kept in the study, exactly K trials run, the champion
    carries epsilon_search (Papernot-Steinke) beside its own epsilon, and its ledger lists every trial."""
    import json

    from mnist_etc.dp.ledger import read_ledger
    from mnist_etc.sweep import LocalRunner, SweepOptions, run_sweep
    from mnist_etc.sweep.orchestrator import DRAWN_ATTR
    from mnist_etc_cli.main import main

    path = tmp_path / "private.yaml"
    path.write_text(textwrap.dedent(PRIVATE_SPACE.format(study="private")))
    space = load_search_space(path)
    heard: list[tuple[int, int | None, str]] = []
    summary = run_sweep(space, SweepOptions.build(artifacts=sweep_root), LocalRunner(1), log=lambda m: None,
                        on_progress=lambda *call: heard.append(call))
    study = study_of("private", sweep_root)
    drawn = study.user_attrs[DRAWN_ATTR]
    assert isinstance(drawn, int) and drawn >= 1 and len(study.trials) == drawn
    # Progress never tells K: no total, and no "trial i/K" in the lines.
    assert [(done, total) for done, total, _ in heard] == [(i, None) for i in range(drawn + 1)]
    assert all(note.startswith(f"trial {i} (#{i - 1}) ") for i, (_, _, note) in enumerate(heard) if i)
    winner = json.loads((sweep_root / "sweeps" / "private" / "winner.json").read_text())
    assert winner["search"]["method"] == "papernot-steinke" == summary.search["method"]
    assert winner["epsilon_search"] >= winner["epsilon"] and winner["epsilon_search"] <= 60
    ledger = read_ledger(sweep_root / "sweeps" / "private" / "privacy_ledger.json")
    assert len([e for e in ledger.entries if e.kind == "training"]) == drawn
    assert main(["ledger", str(sweep_root / "sweeps" / "private")]) == 0
    printed = capsys.readouterr().out
    assert "papernot-steinke" in printed and f"trial {drawn - 1}" in printed and "what was released" in printed
