"""An exported ONNX classifier in MLflow: as an MLflow model directory (the `onnx` flavour with its signature),
and as files attached to the training run it came from. The export itself (conversion, parity with TensorFlow)
is mnist_etc.export's; this module takes its output (model.onnx and the export.json record).

    >>> save_onnx_flavour(result.onnx_path, result.record, Path("out/onnx_model"))   # MLmodel + model.onnx
    >>> log_export_to_mlflow(result.directory, run_id, tracking_uri)                 # "runs:/<run id>/onnx"
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mnist_etc.atomic import write_json_atomic
from mnist_etc.tensor_spec import IMAGE_SHAPE, INPUT_NAME, N_CLASSES, OUTPUT_NAME


def save_onnx_flavour(onnx_path: Path, record: dict[str, Any], path: Path) -> None:
    """The exported classifier as an MLflow model directory at `path`: the `onnx` flavour (and
    `python_function`, so `mlflow.pyfunc.load_model(...).predict(images)["logits"]` and `mlflow models serve`
    work) with its signature, input `input` float32 [-1, 28, 28, 1] -> `logits` float32 [-1, 10]; the export's
    record goes beside MLmodel as export.json."""
    import mlflow
    import mlflow.onnx
    import numpy as np
    import onnx
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *IMAGE_SHAPE), INPUT_NAME)]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, N_CLASSES), OUTPUT_NAME)]))
    # The requirements that MLflow would infer (it imports the model in a subprocess for that, 5 s a model),
    # given directly: the onnx flavour's own pins plus what loading it as python_function needs.
    requirements = [*mlflow.onnx.get_default_pip_requirements(), f"mlflow=={mlflow.__version__}",
                    f"numpy=={np.__version__}"]
    mlflow.onnx.save_model(onnx.load(str(onnx_path)), str(path), signature=signature,
                           pip_requirements=requirements,
                           metadata={"mnist_etc.onnx_sha256": record["onnx"]["sha256"],
                                     "mnist_etc.source_model": record["source"]["model_dir"]})
    write_json_atomic(Path(path) / "export.json", record)


def log_export_to_mlflow(export_dir: Path, run_id: str, tracking_uri: str | None = None,
                         artifact_path: str = "onnx") -> str:
    """Attach an export's model.onnx and export.json (the files in `export_dir`) to the MLflow run that trained
    the source model; returns the URI."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    for name in ("model.onnx", "export.json"):
        client.log_artifact(run_id, str(Path(export_dir) / name), artifact_path)
    return f"runs:/{run_id}/{artifact_path}"
