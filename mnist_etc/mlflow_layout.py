"""Where the project keeps things in MLflow, one home for it: the default store (sweeps, benchmarks, export and
audit read it here) and where a registered champion's files are in its training run."""
from __future__ import annotations

from pathlib import Path

ARTIFACTS = Path("artifacts")


def default_tracking_uri(artifacts: Path | None = None) -> str:
    """`sqlite:///<artifacts>/mlflow.db` as an absolute path; artifacts defaults to ./artifacts."""
    return f"sqlite:///{(Path(artifacts if artifacts is not None else ARTIFACTS) / 'mlflow.db').resolve()}"


CHAMPION_ALIAS = "champion"
ONNX_ARTIFACT = "onnx_model"                    # the registered MLflow model (onnx flavour) in a trial's run
KERAS_ARTIFACT = "model"                        # the trained-model directory it was exported from
KERAS_SOURCE_TAG = "mnist_etc.keras_source"     # model-version tag: where in the run the Keras source is
