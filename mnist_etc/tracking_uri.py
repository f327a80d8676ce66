"""The project's default MLflow store, one home for it (sweeps, benchmarks, export and audit read it here)."""
from __future__ import annotations

from pathlib import Path

ARTIFACTS = Path("artifacts")


def default_tracking_uri(artifacts: Path | None = None) -> str:
    """`sqlite:///<artifacts>/mlflow.db` as an absolute path; artifacts defaults to ./artifacts."""
    return f"sqlite:///{(Path(artifacts if artifacts is not None else ARTIFACTS) / 'mlflow.db').resolve()}"
