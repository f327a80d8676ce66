"""MLflow's home (mnist_etc.tracking): accepted tracking URIs, model references checked without downloading or
creating anything, experiments, and the audit, benchmark and epoch runs, on a real SQLite tracking store."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from mnist_etc.errors import UserError
from mnist_etc.tracking.layout import KERAS_SOURCE_TAG
from mnist_etc.tracking.registry import ModelReference, check_model_reference
from mnist_etc.tracking.store import ACCEPTED_TRACKING_URIS, DATABASE_ENGINES, check_tracking_uri, open_experiment


# ------------------------------------------------------------------------------------------- tracking URIs

@pytest.mark.parametrize("uri", [
    "sqlite:///artifacts/mlflow.db", "sqlite:////tmp/x/mlflow.db", "sqlite+pysqlite:///m.db",
    "http://127.0.0.1:5000", "https://mlflow.example.org", "postgresql://u:pw@db:5432/mlflow",
    "postgresql+psycopg2://u@db/mlflow", "mysql://u@db/mlflow", "mssql+pyodbc://u@db/mlflow",
    "file:///tmp/mlruns", "mlruns", "/tmp/mlruns", "./artifacts/mlruns"])
def test_accepted_tracking_uris(uri):
    assert check_tracking_uri(uri) == uri


@pytest.mark.parametrize("uri, sentence", [
    ("ftp://host/x", f"MLflow tracking URI 'ftp://host/x' is not accepted; use {ACCEPTED_TRACKING_URIS}."),
    ("localhost:5000", f"MLflow tracking URI 'localhost:5000' is not accepted; use {ACCEPTED_TRACKING_URIS}."),
    ("postgres://u:secret@db/m", f"MLflow tracking URI 'postgres://u:***@db/m' is not accepted; "
                                 f"use {ACCEPTED_TRACKING_URIS}."),
    ("http://", f"MLflow tracking URI 'http://' is not accepted; use {ACCEPTED_TRACKING_URIS}."),
    ("databricks", f"MLflow tracking URI 'databricks' is not accepted; use {ACCEPTED_TRACKING_URIS}."),
    ("sqlite://", "MLflow tracking URI 'sqlite://' names no database file; use sqlite:///PATH."),
    ("sqlite:///:memory:", "MLflow tracking URI 'sqlite:///:memory:' names no database file; use sqlite:///PATH."),
    ("", f"MLflow tracking URI '' is empty; use {ACCEPTED_TRACKING_URIS}."),
    (None, f"MLflow tracking URI None is empty; use {ACCEPTED_TRACKING_URIS}."),
])
def test_refused_tracking_uris_are_one_sentence(uri, sentence):
    with pytest.raises(UserError) as err:
        check_tracking_uri(uri)
    assert str(err.value) == sentence


def test_the_database_engines_are_mlflows():
    from mlflow.store.db.db_types import DATABASE_ENGINES as MLFLOW_ENGINES

    assert sorted(DATABASE_ENGINES) == sorted(MLFLOW_ENGINES)


# ------------------------------------------------------------------------------------------ a real store

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A SQLite tracking store with registered model `digits` (version 1: a champion whose Keras source is the
    run's `trial/model`, alias champion; version 2: the run's `model`) and `other` (no versions)."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    exp = client.create_experiment("t", artifact_location=(root / "runs").as_uri())
    run_id = client.create_run(exp).info.run_id
    model = root / "src" / "model"
    model.mkdir(parents=True)
    (model / "model.json").write_text("{}")
    client.log_artifacts(run_id, str(model), "model")
    client.log_artifacts(run_id, str(model), "trial/model")
    client.create_registered_model("digits")
    client.create_model_version("digits", f"runs:/{run_id}/model", run_id=run_id,
                                tags={KERAS_SOURCE_TAG: "trial/model"})
    client.create_model_version("digits", f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias("digits", "champion", 1)
    client.create_registered_model("other")
    return {"uri": uri, "root": root, "run_id": run_id, "client": client}


@pytest.fixture()
def no_download(monkeypatch):
    """Any download is a failure: a check only looks."""
    import mlflow.artifacts
    from mlflow import MlflowClient

    def refuse(*args, **kwargs):
        raise AssertionError("a check downloaded artifacts")

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", refuse)
    monkeypatch.setattr(MlflowClient, "download_artifacts", refuse)


def test_model_references_resolve_without_downloading(store, no_download):
    uri, run_id = store["uri"], store["run_id"]
    assert check_model_reference("models:/digits@champion", uri) == ModelReference(
        "models:/digits@champion", run_id, f"runs:/{run_id}/trial/model")
    assert check_model_reference("models:/digits/2", uri).run_id == run_id
    assert check_model_reference(f"runs:/{run_id}/model", uri) == ModelReference(
        f"runs:/{run_id}/model", run_id, f"runs:/{run_id}/model")
    assert check_model_reference(f"runs:/{run_id}", uri).run_id == run_id


def test_model_reference_default_store_is_the_environments(store, monkeypatch, no_download):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    assert check_model_reference("models:/digits@champion").run_id == store["run_id"]


def test_what_a_store_does_not_hold_is_one_sentence_naming_what_it_does(store, no_download):
    uri, run_id = store["uri"], store["run_id"]
    cases = {
        "models:/nope@champion": f"MLflow model 'models:/nope@champion': there is no registered model 'nope' in "
                                 f"{uri}; registered: digits, other.",
        "models:/digits@best": f"MLflow model 'models:/digits@best': registered model 'digits' in {uri} has no "
                               f"alias 'best'; its aliases: champion (version 1).",
        "models:/other@champion": f"MLflow model 'models:/other@champion': registered model 'other' in {uri} has "
                                  f"no alias 'champion'; it has none.",
        "models:/digits/7": f"MLflow model 'models:/digits/7': registered model 'digits' in {uri} has no version 7; "
                            f"its versions: 1, 2.",
        "runs:/0123abc/model": f"MLflow model 'runs:/0123abc/model': there is no run '0123abc' in {uri}.",
        f"runs:/{run_id}/weights": f"MLflow model 'runs:/{run_id}/weights': run {run_id} in {uri} has no artifact "
                                   f"'weights'; at its top level it has model, trial.",
        f"runs:/{run_id}/trial/x": f"MLflow model 'runs:/{run_id}/trial/x': run {run_id} in {uri} has no artifact "
                                   f"'trial/x'; in trial/ it has trial/model.",
    }
    for reference, sentence in cases.items():
        with pytest.raises(UserError) as err:
            check_model_reference(reference, uri)
        assert str(err.value) == sentence


@pytest.mark.parametrize("reference, sentence", [
    ("digits", "MLflow model 'digits' is not accepted; use models:/<name>@<alias>, models:/<name>/<version> or "
               "runs:/<run id>/<path>."),
    ("models:/digits", "MLflow model 'models:/digits' names no registered model with an alias or a version; use "),
    ("models:/digits@", "MLflow model 'models:/digits@' names no registered model with an alias or a version; use "),
    ("models:/digits/latest", "MLflow model 'models:/digits/latest' names version 'latest', which is not a version "
                              "number; use "),
    ("runs:/", "MLflow model 'runs:/' names no run; use "),
])
def test_malformed_references_are_refused_before_any_store_is_opened(reference, sentence, tmp_path):
    with pytest.raises(UserError) as err:
        check_model_reference(reference, f"sqlite:///{tmp_path / 'none.db'}")
    assert str(err.value).startswith(sentence)
    assert not list(tmp_path.iterdir())


def test_a_missing_store_is_named_and_not_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "a" / "mlflow.db"
    with pytest.raises(UserError) as err:
        check_model_reference("models:/digits@champion", f"sqlite:///{db}")
    assert str(err.value) == (f"MLflow model 'models:/digits@champion': there is no MLflow tracking store at "
                              f"sqlite:///{db} ({db} does not exist); give the tracking URI that holds the model.")
    with pytest.raises(UserError, match=r"there is no MLflow tracking store at mlruns \(mlruns does not exist\)"):
        check_model_reference("models:/digits@champion", "mlruns")
    with pytest.raises(UserError, match="MLflow tracking URI 'ftp://x' is not accepted"):
        check_model_reference("models:/digits@champion", "ftp://x")
    assert not list(tmp_path.rglob("*"))


def test_a_store_that_does_not_answer_is_one_sentence(monkeypatch):
    from mnist_etc.ports import free_ports

    # The check's own patience, set here so that it ends with this test; no retries: the port is closed.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    dead = f"http://127.0.0.1:{free_ports(1)[0]}"
    with pytest.raises(UserError, match=rf"^could not check MLflow model 'models:/digits@champion' in {dead} "
                                        r"\(MlflowException: "):
        check_model_reference("models:/digits@champion", dead)


# ------------------------------------------------------------------------------------------ experiments, runs

def test_an_experiment_is_created_beside_a_sqlite_store_and_restored_when_deleted(store, tmp_path):
    client, exp_id = open_experiment(store["uri"], "made-here", tmp_path)
    assert client.get_experiment(exp_id).artifact_location == (tmp_path / "mlflow-artifacts").resolve().as_uri()
    client.delete_experiment(exp_id)
    _, again = open_experiment(store["uri"], "made-here", tmp_path)
    assert again == exp_id and client.get_experiment(exp_id).lifecycle_stage == "active"


def test_a_store_that_cannot_be_used_is_one_sentence():
    with pytest.raises(UserError, match=r"^could not use MLflow tracking URI 'ftp://x' \("):
        open_experiment("ftp://x", "e", None)


AUDIT = {"lineage": "mnist-etc-x",
         "verdict": {"passed": False, "verdict": "INCONCLUSIVE", "growth": 0.01,
                     "tests": [{"name": "epsilon", "passed": True, "verdict": "PASS"},
                               {"name": "leakage", "passed": False, "verdict": "INCONCLUSIVE"}]},
         "served_attack": {"summary": {"excess_cosine": 0.1}, "queries": 100, "seconds": 2.0,
                           "images_per_second": 50.0},
         "membership": {"auc": 0.5, "auc_low": 0.4, "auc_high": 0.6, "advantage": 0.0, "p_value": 0.9,
                        "tpr_at_0_1pct_fpr": 0.0, "tpr_at_1pct_fpr": 0.01, "membership_epsilon_lb": 0.2},
         "reconstruction": {"members_identification_rate": 0.1, "members_identification_low": 0.05,
                            "members_identification_high": 0.17, "non_members_identification_rate": 0.09,
                            "bound": 0.3, "bound_low": 0.2, "bound_high": 0.4, "bound_chance": 0.11},
         "canary_audit": {"epsilon_lb": 0.3, "confidence": 0.95, "canaries": 100, "seconds": 9.0, "consistent": True,
                          "accounted_epsilon": math.inf},
         "privacy": {"epsilon": 2.0, "epsilon_rdp": math.inf},
         "config": {"attack": {"victims": 10}, "canary": {"canaries": 100}, "leakage_bound": 0.1}}


def test_an_audit_run_holds_figures_policy_and_report(store, tmp_path, monkeypatch):
    from mnist_etc.tracking.audit import log_audit_run

    monkeypatch.chdir(tmp_path)   # the audit experiment keeps MLflow's default artifact location, ./mlruns
    report = tmp_path / "20250101T000000Z"
    report.mkdir()
    for f in ("audit.json", "report.md", "grid.png", "notes.txt"):
        (report / f).write_text(f)
    client = store["client"]
    run = client.get_run(log_audit_run(AUDIT, report, store["uri"]))
    assert client.get_experiment(run.info.experiment_id).name == "privacy-audit"
    assert (run.info.run_name, run.info.status) == ("audit-20250101T000000Z", "FAILED")
    assert {k: run.data.tags[k] for k in ("lineage", "passed", "verdict")} == {
        "lineage": "mnist-etc-x", "passed": "False", "verdict": "INCONCLUSIVE"}
    assert run.data.metrics == {
        "served_excess_cosine": 0.1, "served_queries": 100, "served_seconds": 2.0, "served_images_per_second": 50.0,
        "membership_auc": 0.5, "membership_auc_low": 0.4, "membership_auc_high": 0.6, "membership_advantage": 0.0,
        "membership_p_value": 0.9, "membership_tpr_at_0_1pct_fpr": 0.0, "membership_tpr_at_1pct_fpr": 0.01,
        "triton_images_per_second": 50.0, "audit_passed": 0.0, "test_epsilon_passed": 1.0, "test_leakage_passed": 0.0,
        "audit_verdict": 0.5, "test_epsilon_verdict": 1.0, "test_leakage_verdict": 0.5, "membership_epsilon_lb": 0.2,
        "members_identification_rate": 0.1, "members_identification_low": 0.05, "members_identification_high": 0.17,
        "non_members_identification_rate": 0.09, "reconstruction_bound": 0.3, "reconstruction_bound_low": 0.2,
        "reconstruction_bound_high": 0.4, "reconstruction_bound_chance": 0.11,
        "canary_epsilon_lb": 0.3, "canary_confidence": 0.95, "canary_count": 100, "canary_seconds": 9.0,
        "canary_audit_consistent": 1.0, "excess_cosine_growth": 0.01, "epsilon": 2.0}
    assert run.data.params == {"attack_victims": "10", "canary_canaries": "100", "leakage_bound": "0.1"}
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id)) == ["audit.json", "grid.png", "report.md"]


def test_a_benchmark_run_logs_each_point_as_a_step(store, tmp_path):
    from mnist_etc.tracking.benchmark import log_benchmark_run

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "results.csv").write_text("x")
    run_id = log_benchmark_run(store["uri"], tmp_path, "b1", run_dir, {"run": "b1", "grid": {"delay": [1, 2]}},
                               {"best_throughput": 20.0, "best_p99_ms": math.nan},
                               [(0, {"throughput": 10.0, "p99_ms": 3.0}), (2, {"throughput": 20.0, "p99_ms": 4.0})])
    client = store["client"]
    run = client.get_run(run_id)
    assert (run.info.run_name, run.info.status, run.data.tags["mnist_etc.kind"]) == ("b1", "FINISHED", "benchmark")
    assert run.data.params == {"run": "b1", "grid.delay": "[1, 2]"}
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "point.throughput")] == [(0, 10.0), (2, 20.0)]
    assert "best_p99_ms" not in run.data.metrics and run.data.metrics["best_throughput"] == 20.0
    assert [a.path for a in client.list_artifacts(run_id)] == ["results.csv"]


def test_epoch_metrics_go_live_and_say_so(store):
    from mnist_etc.tracking.epochs import EPOCH_METRICS_ATTR, MlflowEpochLogger, epoch_metrics_status, logged_live

    client = store["client"]
    run_id = client.create_run(client.get_experiment_by_name("t").experiment_id).info.run_id
    hook = MlflowEpochLogger(store["uri"], run_id)
    hook("clf", 0, {"loss": 1.0, "bad": math.nan})
    hook("clf", 1, {"loss": 0.5})
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "clf.loss")] == [(0, 1.0), (1, 0.5)]
    assert epoch_metrics_status(hook) == "live" and logged_live({EPOCH_METRICS_ATTR: "live"})
    hook.error = "MlflowException: down"
    assert epoch_metrics_status(hook) == "failed: MlflowException: down" and epoch_metrics_status(None) == "off"
    assert not logged_live({EPOCH_METRICS_ATTR: "failed: x"}) and not logged_live({})


def test_what_an_http_error_says():
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, RESOURCE_DOES_NOT_EXIST

    from mnist_etc.tracking.patience import refused, unreachable

    try:
        try:
            raise ConnectionRefusedError("refused")
        except ConnectionRefusedError as inner:
            raise MlflowException("API request failed") from inner
    except MlflowException as exc:
        assert unreachable(exc) and not refused(exc)
    assert refused(MlflowException("no such run", error_code=RESOURCE_DOES_NOT_EXIST))
    assert not unreachable(MlflowException("no such run", error_code=RESOURCE_DOES_NOT_EXIST))
    assert not refused(MlflowException("server error", error_code=INTERNAL_ERROR))


@pytest.mark.parametrize("argv, sentence", [
    (["export", "--mlflow-model", "models:/digits@nightly"], "registered model 'digits' in"),
    (["audit-dp", "--mlflow-model", "models:/nope@champion"], "there is no registered model 'nope' in"),
    (["audit", "--champion", "models:/digits/9"], "'digits'"),
    (["audit", "--champion", "models:/other@champion"], "registered model 'other' in"),
    (["export", "--mlflow-model", "models:/digits@champion", "--mlflow-tracking-uri", "ftp://h"],
     "MLflow tracking URI 'ftp://h' is not accepted"),
    (["sweep", "--space", "search_spaces/smoke.yaml", "--mlflow-uri", "ftp://h"],
     "MLflow tracking URI 'ftp://h' is not accepted"),
    (["benchmark", "--mlflow-uri", "gopher://h"], "MLflow tracking URI 'gopher://h' is not accepted"),
    (["ui", "--tracking-uri", "nope://x"], "MLflow tracking URI 'nope://x' is not accepted"),
])
def test_every_verb_resolves_references_and_uris_before_anything_starts(store, tmp_path, argv, sentence):
    """Against a real store: a reference it does not hold, or a URI of no accepted scheme, is one sentence, exit 2,
    within seconds (no temporary Prefect server, no download, no training)."""
    import subprocess
    import sys
    import time

    repo = Path(__file__).resolve().parent.parent
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MLFLOW_TRACKING_URI": store["uri"]}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mnist_etc_cli.main", *argv], cwd=repo, capture_output=True,
                          text=True, timeout=60, env=env)
    seconds = time.perf_counter() - t0
    assert done.returncode == 2, done.stdout + done.stderr
    assert sentence in done.stderr and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "prefect" not in (done.stdout + done.stderr).lower()
    assert seconds < 15, f"{seconds:.1f} s: something heavy ran before the check"
    assert not (tmp_path / "artifacts").exists() and not list(store["root"].glob("mlruns"))


def test_the_ledger_verb_reads_the_default_store_and_creates_none(store, tmp_path):
    """`mnist-etc ledger models:/...` with no tracking URI reads the project's store (artifacts/mlflow.db of the
    working directory): absent, it says so and creates no database there, neither the project's nor MLflow's own
    default (./mlflow.db); present, a champion without a ledger is one sentence too."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "PYTHONPATH": str(repo)}
    done = subprocess.run([sys.executable, "-m", "mnist_etc_cli.main", "ledger", "models:/digits@champion"],
                          cwd=work, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and "there is no MLflow tracking store at" in done.stderr, done.stderr
    assert sorted(p.name for p in work.iterdir()) == []
    (work / "artifacts").mkdir()
    (work / "artifacts" / "mlflow.db").symlink_to(store["root"] / "mlflow.db")   # the project's default store
    done = subprocess.run([sys.executable, "-m", "mnist_etc_cli.main", "ledger", "models:/digits@champion"],
                          cwd=work, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and "has no privacy_ledger.json" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in work.iterdir()) == ["artifacts"]
