"""Where the project keeps things in MLflow, one home for the names: the default store, the experiments, the
registered models and their alias, and where a trial's and a champion's files are in their run. Plain names
(no MLflow import): the sweep, the benchmark, the export and the audit read them here."""
from __future__ import annotations

import os
from pathlib import Path

ARTIFACTS = Path("artifacts")
ARTIFACT_ROOT = "mlflow-artifacts"    # under the artifacts root: run files of experiments in a SQLite store


def default_tracking_uri(artifacts: Path | None = None) -> str:
    """`sqlite:///<artifacts>/mlflow.db` as an absolute path; artifacts defaults to ./artifacts."""
    return f"sqlite:///{(Path(artifacts if artifacts is not None else ARTIFACTS) / 'mlflow.db').resolve()}"


def tracking_uri_or_default(tracking_uri: str | None) -> str:
    """The given URI, else $MLFLOW_TRACKING_URI, else the default store: where an MLflow model is looked up."""
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


# Experiments
SWEEP_EXPERIMENT = "mnist-etc-sweeps"          # a parent run per study, a nested run per trial
BENCHMARK_EXPERIMENT = "mnist-etc-benchmarks"  # a run per benchmark
AUDIT_EXPERIMENT = "privacy-audit"             # a run per audit of a champion

PARENT_RUN_ATTR = "mlflow_parent_run_id"       # the Optuna study's user attribute naming its sweep's parent run


def registered_model_name(study: str) -> str:
    """The registered model a sweep's champion goes to."""
    return f"mnist-etc-{study}"


CHAMPION_ALIAS = "champion"
ONNX_ARTIFACT = "onnx_model"                    # the registered MLflow model (onnx flavour) in a trial's run
KERAS_ARTIFACT = "model"                        # the trained-model directory it was exported from
KERAS_SOURCE_TAG = "mnist_etc.keras_source"     # model-version tag: where in the run the Keras source is

# A trial that ran on a worker of another machine (mnist_etc.sweep.transport): its whole directory is in its run
# under TRIAL_ARTIFACT_PATH, the outcome file uploaded last, so its presence there marks a complete upload.
TRIAL_ARTIFACT_PATH = "trial"
OUTCOME_FILE = "outcome.json"                   # a trial directory's outcome, written last (mnist_etc.sweep.trial)
