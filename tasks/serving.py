"""Prefect tasks around the library's export, MLflow logging and Triton inference (no ML logic here).

Export is deterministic, so it is not retried (a failed parity check would fail again); MLflow logging and
inference talk to services and get a retry for transient errors.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from mnist_etc.artifact_keys import artifact_key
from mnist_etc.export import ExportResult, export_to_repository
from mnist_etc.export_source import ExportSource, resolve_source
from mnist_etc.inference import infer_test_split
from mnist_etc.model_store import load_model
from mnist_etc.tracking.export import log_export_to_mlflow
from mnist_etc.triton.model_config import TritonModelConfig


@task(name="resolve-export-source", cache_policy=NO_CACHE, persist_result=False)
def resolve_source_task(model_dir: str | None, winner: str | None, mlflow_model: str | None,
                        tracking_uri: str | None) -> ExportSource:
    source = resolve_source(model_dir, winner, mlflow_model, tracking_uri)
    get_run_logger().info("export source: %s (%s)", source.model_dir, source.info.get("kind"))
    return source


@task(name="export-onnx", cache_policy=NO_CACHE, persist_result=False, retries=0)
def export_task(source: ExportSource, repository: str, name: str, triton_config: TritonModelConfig,
                backends: tuple[str, ...], opset: int) -> tuple[ExportResult, dict[str, Any]]:
    logger = get_run_logger()
    result, published = export_to_repository(load_model(source.model_dir), Path(repository), name, triton_config,
                                             backends, source.info, opset=opset)
    rec = result.record
    summary = {"model": name, "version": published.version, "export_seconds": round(result.seconds, 2),
               "max_abs_diff": rec["parity"]["max_abs_diff"], "parity_images": rec["parity"]["n_images"],
               "tf_test_accuracy": rec["test_accuracy"]["tensorflow"],
               "ort_test_accuracy": rec["test_accuracy"]["onnxruntime"],
               "model_dirs": {b: str(p / str(published.version)) for b, p in published.model_dirs.items()},
               "source_model_dir": str(source.model_dir)}
    logger.info("published %s v%d (parity max |diff| %.2e)", name, published.version, summary["max_abs_diff"])
    rows = "\n".join(f"| {b} | `{p}` |" for b, p in summary["model_dirs"].items())
    create_markdown_artifact(key=artifact_key("export", name), description=f"ONNX export of {name}", markdown=(
        f"# {name} v{published.version}\n\nSource: `{source.model_dir}` ({source.info.get('kind')})\n\n"
        f"Parity on {summary['parity_images']} test images: max |ORT - TF| = {summary['max_abs_diff']:.2e}, "
        f"classes identical.\n\nTest accuracy: TensorFlow {summary['tf_test_accuracy']:.4f}, ONNX Runtime "
        f"{summary['ort_test_accuracy']:.4f}. Export took {summary['export_seconds']} s.\n\n"
        f"| backend | version directory |\n|---|---|\n{rows}\n"))
    return result, summary


@task(name="log-onnx-to-mlflow", cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=5)
def log_to_mlflow_task(result: ExportResult, run_id: str, tracking_uri: str | None) -> str:
    uri = log_export_to_mlflow(result.directory, run_id, tracking_uri)
    get_run_logger().info("logged model.onnx and export.json to %s", uri)
    return uri


@task(name="infer-test-split", cache_policy=NO_CACHE, persist_result=False, retries=1, retry_delay_seconds=5)
def infer_task(model: str, version: int | None, url: str | None, repository: str, out_dir: str,
               batch_size: int | None) -> dict[str, Any]:
    result = infer_test_split(model, version, url, Path(repository), Path(out_dir), batch_size)
    summary = result.to_dict()
    get_run_logger().info("%s v%d: accuracy %.4f over Triton, %s in-process; wrote %s", result.model,
                          result.version, result.accuracy, result.in_process_accuracy, result.csv_path)
    create_table_artifact(key=artifact_key("infer", model), description=f"Test-split inference of {model}",
                          table=[{k: v for k, v in summary.items()}])
    return summary
