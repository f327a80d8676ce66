"""Prefect flow `infer`: the test split through Triton over gRPC, predictions to
`artifacts/inference/<model>_v<version>.csv`; fails if the served accuracy differs from the in-process one.

    python -m flows.infer --help                  # or: mnist-etc infer [--url 127.0.0.1:8001]
    from flows.infer import infer; infer(model="mnist_etc")

Without `url`, an embedded Triton server is started for the run and stopped after it.
"""
from __future__ import annotations

from typing import Any

from prefect import flow

from mnist_etc.triton.repository import DEFAULT_MODEL_NAME, DEFAULT_REPOSITORY, validate_model_name
from tasks.serving import infer_task


class AccuracyMismatch(RuntimeError):
    """Served predictions differ from the in-process model's: a serving bug, not a user error."""


@flow(name="infer", log_prints=True, description="Batch inference of the test split through Triton to CSV.")
def infer(model: str = DEFAULT_MODEL_NAME, version: int | None = None, url: str | None = None,
          repository: str = str(DEFAULT_REPOSITORY), out_dir: str = "artifacts/inference",
          batch_size: int | None = None) -> dict[str, Any]:
    validate_model_name(model)
    summary = infer_task(model, version, url, repository, out_dir, batch_size)
    if summary["matches_in_process"] is False:
        raise AccuracyMismatch(f"accuracy over Triton {summary['accuracy']:.4f} differs from the in-process "
                               f"{summary['in_process_accuracy']:.4f} ({summary['csv']}).")
    return summary


if __name__ == "__main__":
    import sys

    from mnist_etc_cli.main import main

    sys.exit(main(["infer", *sys.argv[1:]]))
