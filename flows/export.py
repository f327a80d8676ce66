"""Prefect flow `export`: a trained model (sweep winner by default) to ONNX, parity-checked, published as
the next version in the Triton model repository, and logged to MLflow next to its training run.

    python -m flows.export --help                 # or: mnist-etc export --model artifacts/models/dev
    from flows.export import export; export(model_dir="artifacts/models/dev")

Without PREFECT_API_URL, Prefect starts a temporary local server for the run (10 to 15 s).
"""
from __future__ import annotations

from typing import Any

from prefect import flow

from mnist_etc.errors import UserError
from mnist_etc.triton.model_config import BACKENDS, TritonModelConfig
from mnist_etc.triton.repository import DEFAULT_MODEL_NAME, DEFAULT_REPOSITORY, validate_model_name
from tasks.serving import export_task, log_to_mlflow_task, resolve_source_task


@flow(name="export", log_prints=True,
      description="Export a trained classifier to ONNX, check parity and add it as a Triton model version.")
def export(model_dir: str | None = None, winner: str | None = None, mlflow_model: str | None = None,
           mlflow_tracking_uri: str | None = None, name: str = DEFAULT_MODEL_NAME,
           repository: str = str(DEFAULT_REPOSITORY), triton_config: dict[str, Any] | None = None,
           backends: list[str] | None = None, opset: int = 17, log_to_mlflow: bool = True) -> dict[str, Any]:
    # Validated at the edge, before any task runs: unknown config keys and bad names get one sentence.
    cfg = TritonModelConfig.from_mapping(triton_config or {})
    validate_model_name(name)
    chosen = tuple(backends or BACKENDS)
    if not chosen or set(chosen) - set(BACKENDS):
        raise UserError(f"backends must be python and/or onnxruntime, got {backends!r}.")
    source = resolve_source_task(model_dir, winner, mlflow_model, mlflow_tracking_uri)
    result, summary = export_task(source, repository, name, cfg, chosen, opset)
    if log_to_mlflow and source.mlflow_run_id:
        summary["mlflow"] = log_to_mlflow_task(result, source.mlflow_run_id, mlflow_tracking_uri or source.tracking_uri)
    return summary


if __name__ == "__main__":
    import sys

    from mnist_etc_cli.main import main

    sys.exit(main(["export", *sys.argv[1:]]))
