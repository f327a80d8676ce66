"""MLflow for a sweep: one parent run per study, a nested run per trial, the winner in the model registry.

The default tracking store is a SQLite file under artifacts/ (`artifacts/mlflow.db`, artifacts in
`artifacts/mlflow-artifacts/`); any tracking URI (an `http://` tracking server, PostgreSQL) works too.
The parent run's id is kept in the study's user attributes, so a resumed sweep nests its trials under
the same parent run.

Browse it with: mnist-etc ui (the MLflow UI on 127.0.0.1:5000 for artifacts/mlflow.db)
"""
from __future__ import annotations

import functools
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mnist_etc.errors import UserError
from mnist_etc.mlflow_layout import CHAMPION_ALIAS, KERAS_ARTIFACT, KERAS_SOURCE_TAG, ONNX_ARTIFACT

EXPERIMENT = "mnist-etc-sweeps"

PARENT_RUN_ATTR = "mlflow_parent_run_id"
HTTP_PATIENCE = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


def patient_http() -> None:
    """MLflow's own default waits minutes per call on a dead server (7 retries, backoff 2, 120 s timeout); a
    sweep (and a trial's upload, which retries on its own: mnist_etc.sweep.transport) would stall on every
    call. The user's settings win."""
    for name, value in HTTP_PATIENCE.items():
        os.environ.setdefault(name, value)


def registered_model_name(study: str) -> str:
    return f"mnist-etc-{study}"


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


def _unreachable(exc: BaseException) -> bool:
    """Whether an exception says the tracking server did not answer (refused, reset, timed out), as opposed to
    a request it answered with an error."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (ConnectionError, TimeoutError)):
            return True
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    return any(s in text for s in ("Max retries exceeded", "Connection refused", "Read timed out",
                                   "Connection aborted"))


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
                if self.tracking_uri.startswith(("http://", "https://")) and _unreachable(exc):
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
        from mlflow import MlflowClient

        self.missing: list[str] = []   # what could not be tracked (the store was down): winner.json says so
        self._unreachable_since: float | None = None   # monotonic time of the last unanswered HTTP call
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        try:
            exp = self.client.get_experiment_by_name(EXPERIMENT)
            if exp is None:
                location = None
                if tracking_uri.startswith("sqlite:") and artifacts is not None:
                    location = (Path(artifacts) / "mlflow-artifacts").resolve().as_uri()
                self.experiment_id = self.client.create_experiment(EXPERIMENT, artifact_location=location)
            else:
                if exp.lifecycle_stage == "deleted":
                    self.client.restore_experiment(exp.experiment_id)
                self.experiment_id = exp.experiment_id
        except Exception as exc:  # MlflowException, connection refused, bad URI: the user's to fix
            raise UserError(f"could not use MLflow tracking URI {tracking_uri!r} "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}).") from None

    def skip_reason(self) -> str | None:
        """Why a tracking call is skipped now (the HTTP server did not answer a moment ago), or None."""
        down = self._unreachable_since
        if down is not None and time.monotonic() - down < UNREACHABLE_SKIP_SECONDS:
            return f"skipped, the tracking server did not answer {time.monotonic() - down:.0f} s before"
        return None

    # ------------------------------------------------------------------------------------- runs

    def parent_run(self, study: Any, space: Any, storage_label: str) -> str:
        """The study's parent run: reused when the study has one in this tracking store, else created."""
        run_id = study.user_attrs.get(PARENT_RUN_ATTR)
        if run_id:
            try:
                run = self.client.get_run(run_id)
                if run.info.experiment_id == self.experiment_id and run.info.lifecycle_stage == "active":
                    self.client.update_run(run_id, status="RUNNING")
                    return run_id
            except Exception:  # not in this tracking store: start a new parent run below
                pass
        run = self.client.create_run(self.experiment_id, run_name=f"sweep-{space.study}",
                                     tags={"optuna.study": space.study, "optuna.storage": storage_label,
                                           "mnist_etc.kind": "sweep"})
        params = {"sampler": space.sampler.name, "sampler_seed": space.sampler.seed,
                  "objectives": f"max {space.accuracy_metric}, min {space.leakage_metric}",
                  "winner_policy": space.winner.describe(space.leakage_metric)}
        params.update({f"fixed.{k}": v for k, v in space.fixed.items()})
        params.update({f"search.{name}": str(p.to_dict()) for name, p in space.params.items()})
        params.update({f"attack.{k}": v for k, v in space.fingerprint()["attack"].items()})
        params.update({f"data.{k}": v for k, v in space.fingerprint()["data"].items()})
        self.log_params(run.info.run_id, params)
        study.set_user_attr(PARENT_RUN_ATTR, run.info.run_id)
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
    def finish_trial_run(self, run_id: str | None, outcome: Any, trial_dir: Path) -> None:
        if run_id is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in _finite_metrics(outcome.metrics).items()]
        if not str(outcome.user_attrs.get("mlflow_epoch_metrics", "")).startswith("live"):
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
        from mnist_etc.sweep.transport import ARTIFACT_PATH, OUTCOME_FILE

        return any(a.path == f"{ARTIFACT_PATH}/{OUTCOME_FILE}" for a in self.client.list_artifacts(run_id, ARTIFACT_PATH))

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

    def register_champion(self, study: str, run_id: str, model_dir: str | Path) -> tuple[str, int]:
        """Register the winning trial as an MLflow model and point alias `champion` at it.

        The version is the ONNX classifier with the `onnx` flavour and a signature (logged to the trial's run
        as `onnx_model/`); the Keras model it was exported from stays the run's `model/` artifact, named by
        the version's tag `mnist_etc.keras_source` (`trial/model` for a trial that ran on a worker). The same winner
        on a rerun reuses its version."""
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
            from mnist_etc.export import save_mlflow_onnx_model
            from mnist_etc.model_store import load_model

            with tempfile.TemporaryDirectory(prefix="mnist-etc-champion-") as tmp:
                save_mlflow_onnx_model(load_model(model_dir), Path(tmp) / ONNX_ARTIFACT,
                                       source={"kind": "sweep", "study": study, "mlflow_run_id": run_id})
                client.log_artifacts(run_id, str(Path(tmp) / ONNX_ARTIFACT), ONNX_ARTIFACT)
            source = f"{client.get_run(run_id).info.artifact_uri}/{ONNX_ARTIFACT}"
            from mnist_etc.sweep.transport import ARTIFACT_PATH

            keras = f"{ARTIFACT_PATH}/{KERAS_ARTIFACT}" if self.worker_uploaded(run_id) else KERAS_ARTIFACT
            version = int(client.create_model_version(name, source=source, run_id=run_id, tags={
                "optuna.study": study, KERAS_SOURCE_TAG: keras}).version)
        client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
        return name, version
