"""MLflow for a sweep: one parent run per study, a nested run per trial, the winner in the model registry.

The default tracking store is a SQLite file under artifacts/ (`artifacts/mlflow.db`, artifacts in
`artifacts/mlflow-artifacts/`); any tracking URI (an `http://` tracking server, PostgreSQL) works too.
The parent run's id is kept in the study's user attributes (layout.PARENT_RUN_ATTR, by the orchestrator), so a
resumed sweep nests its trials under the same parent run. The tracker takes plain data and callables: it knows
nothing of search spaces, Optuna or how a champion is exported (mnist_etc.sweep.orchestrator passes a function
that writes it).

Browse it with: mnist-etc ui (the MLflow UI on 127.0.0.1:5000 for artifacts/mlflow.db)
"""
from __future__ import annotations

import functools
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Protocol

from mnist_etc.tracking.epochs import logged_live
from mnist_etc.tracking.layout import (CHAMPION_ALIAS, KERAS_ARTIFACT, KERAS_SOURCE_TAG, ONNX_ARTIFACT,
                                       SWEEP_EXPERIMENT, TRIAL_ARTIFACT_PATH, registered_model_name)
from mnist_etc.tracking.patience import patient_http, unreachable
from mnist_etc.tracking.store import open_experiment
from mnist_etc.tracking.trial_files import trial_uploaded


class TrialResult(Protocol):
    """What the tracker reads of a finished trial (mnist_etc.sweep.trial.TrialOutcome is one)."""

    values: list[float]
    user_attrs: dict[str, Any]
    metrics: dict[str, float]
    history: dict[str, list[dict[str, float]]]


def _finite_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out[k] = f
    return out


# After a tracking server failed to answer, further calls within this many seconds are skipped (and recorded as
# missing) instead of each waiting through the HTTP retries again; the first call after it probes the server.
UNREACHABLE_SKIP_SECONDS = 30.0


def _not_fatal(what: str) -> Any:
    """A tracking call that must not end the sweep when the store is down: trials still train and are told to
    Optuna; the failure is printed, remembered in `missing`, and the call returns None. While an HTTP tracking
    server is unreachable, calls are skipped for UNREACHABLE_SKIP_SECONDS rather than each paying the retries."""

    def wrap(method: Any) -> Any:
        @functools.wraps(method)
        def call(self: "SweepTracker", *args: Any, **kwargs: Any) -> Any:
            skipped = self.skip_reason()
            if skipped:
                self.missing.append(f"{what}: {skipped}")
                return None
            try:
                result = method(self, *args, **kwargs)
            except Exception as exc:  # MlflowException, connection refused, timeouts, SQLite locked
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                self.missing.append(f"{what}: {reason}")
                print(f"MLflow tracking failed ({what}); the sweep goes on without it: {reason}", file=sys.stderr)
                if self.tracking_uri.startswith(("http://", "https://")) and unreachable(exc):
                    self._unreachable_since = time.monotonic()
                return None
            self._unreachable_since = None
            return result

        return call

    return wrap


class SweepTracker:
    """The MLflow side of one sweep; every call names its run explicitly (no fluent global state), so
    trial threads and the orchestrator can log at the same time."""

    def __init__(self, tracking_uri: str, artifacts: Path | None = None):
        if tracking_uri.startswith(("http://", "https://")):
            patient_http()
        self.missing: list[str] = []   # what could not be tracked (the store was down): winner.json says so
        self._unreachable_since: float | None = None   # monotonic time of the last unanswered HTTP call
        self.tracking_uri = tracking_uri
        self.client, self.experiment_id = open_experiment(tracking_uri, SWEEP_EXPERIMENT, artifacts)

    def skip_reason(self) -> str | None:
        """Why a tracking call is skipped now (the HTTP server did not answer a moment ago), or None."""
        down = self._unreachable_since
        if down is not None and time.monotonic() - down < UNREACHABLE_SKIP_SECONDS:
            return f"skipped, the tracking server did not answer {time.monotonic() - down:.0f} s before"
        return None

    # ------------------------------------------------------------------------------------- runs

    def parent_run(self, study: str, storage_label: str, params: dict[str, Any], run_id: str | None = None) -> str:
        """The study's parent run: `run_id` (the one the study names) when it is in this tracking store, else a
        new run with `params` (the sweep's settings)."""
        if run_id:
            try:
                run = self.client.get_run(run_id)
                if run.info.experiment_id == self.experiment_id and run.info.lifecycle_stage == "active":
                    self.client.update_run(run_id, status="RUNNING")
                    return run_id
            except Exception:  # not in this tracking store: start a new parent run below
                pass
        run = self.client.create_run(self.experiment_id, run_name=f"sweep-{study}",
                                     tags={"optuna.study": study, "optuna.storage": storage_label,
                                           "mnist_etc.kind": "sweep"})
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow's per-batch limit
            self.client.log_batch(run_id, params=items[i:i + 100])

    @_not_fatal("start of a trial run")
    def start_trial_run(self, parent_id: str, study: str, number: int, train: dict[str, Any],
                        params: dict[str, Any]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=f"trial-{number}",
                                     tags={"mlflow.parentRunId": parent_id, "optuna.study": study,
                                           "optuna.trial": str(number), "mnist_etc.kind": "trial"})
        self.log_params(run.info.run_id, {**train, **{f"searched.{k}": v for k, v in params.items()}})
        return run.info.run_id

    @_not_fatal("a trial's metrics and artifacts")
    def finish_trial_run(self, run_id: str | None, outcome: TrialResult, trial_dir: Path) -> None:
        if run_id is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in _finite_metrics(outcome.metrics).items()]
        if not logged_live(outcome.user_attrs):   # else the trial's MlflowEpochLogger logged them as they came
            for stage, rows in outcome.history.items():
                for epoch, row in enumerate(rows):
                    metrics += [Metric(f"{stage}.{k}", v, now, epoch) for k, v in _finite_metrics(row).items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(run_id, metrics=metrics[i:i + 1000])
        eps = outcome.user_attrs.get("epsilon")
        self.client.set_tag(run_id, "epsilon", str(eps))
        self.client.set_tag(run_id, "objectives", ", ".join(f"{v:.6g}" for v in outcome.values))
        if Path(trial_dir).is_dir() and not self.worker_uploaded(run_id):
            self.client.log_artifacts(run_id, str(trial_dir))
        self.client.set_terminated(run_id, "FINISHED")

    def worker_uploaded(self, run_id: str) -> bool:
        """The trial ran on a worker, which put its whole directory in the run under `trial/`
        (mnist_etc.sweep.transport): it is not uploaded a second time, and the champion's Keras source is there."""
        return trial_uploaded(self.client, run_id)

    @_not_fatal("a failed trial's run")
    def fail_trial_run(self, run_id: str | None, error: str, status: str = "FAILED") -> None:
        if run_id is None:
            return
        self.client.set_tag(run_id, "error", error[:5000])
        self.client.set_terminated(run_id, status)

    @_not_fatal("the sweep run's summary and files")
    def finish_parent(self, run_id: str, summary: dict[str, Any], files: list[Path]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, v, now, 0)
                                               for k, v in _finite_metrics(summary).items()])
        for f in files:
            if Path(f).is_file():
                self.client.log_artifact(run_id, str(f))
        self.client.set_terminated(run_id, "FINISHED")

    # --------------------------------------------------------------------------------- registry

    @_not_fatal("the privacy ledger")
    def log_ledger(self, run_id: str | None, path: Path) -> None:
        """The champion's privacy ledger at the top of its run, beside its `model` artifact."""
        if run_id is not None:
            self.client.log_artifact(run_id, str(path))

    def register_champion(self, study: str, run_id: str, write_onnx_model: Callable[[Path], Any],
                          tags: dict[str, str] | None = None) -> tuple[str, int]:
        """Register the winning trial as an MLflow model and point alias `champion` at it.

        The version is the ONNX classifier with the `onnx` flavour and a signature (logged to the trial's run
        as `onnx_model/`, written by `write_onnx_model(directory)`: mnist_etc.export.save_mlflow_onnx_model); the
        Keras model it was exported from stays the run's `model/` artifact, named by the version's tag
        `mnist_etc.keras_source` (`trial/model` for a trial that ran on a worker). The same winner on a rerun
        reuses its version (and writes nothing). `tags` (the privacy figures: epsilon, epsilon_search) are set on
        the version, a reused one too."""
        skipped = self.skip_reason()
        if skipped:
            raise ConnectionError(skipped)
        name = registered_model_name(study)
        client = self.client
        try:
            client.get_registered_model(name)
        except Exception:
            client.create_registered_model(name, description=(
                f"Winner of the mnist-etc sweep of study {study}: the ONNX classifier (onnx flavour; input "
                f"float32 [-1, 28, 28, 1], output logits [-1, 10]); the Keras model it was exported from is its "
                f"run's '{KERAS_ARTIFACT}' artifact (mnist_etc.model_store.load_model)."))
        existing = [v for v in client.search_model_versions(f"name='{name}'")
                    if v.run_id == run_id and (v.tags or {}).get(KERAS_SOURCE_TAG)]
        if existing:
            version = max(int(v.version) for v in existing)
        else:
            with tempfile.TemporaryDirectory(prefix="mnist-etc-champion-") as tmp:
                write_onnx_model(Path(tmp) / ONNX_ARTIFACT)
                client.log_artifacts(run_id, str(Path(tmp) / ONNX_ARTIFACT), ONNX_ARTIFACT)
            source = f"{client.get_run(run_id).info.artifact_uri}/{ONNX_ARTIFACT}"
            keras = f"{TRIAL_ARTIFACT_PATH}/{KERAS_ARTIFACT}" if self.worker_uploaded(run_id) else KERAS_ARTIFACT
            version = int(client.create_model_version(name, source=source, run_id=run_id, tags={
                "optuna.study": study, KERAS_SOURCE_TAG: keras}).version)
        for key, value in (tags or {}).items():
            client.set_model_version_tag(name, str(version), key, value)
        client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
        return name, version
