"""A trial's directory in its MLflow run, for a trial that ran on a worker of another machine (no shared disk):
uploaded under `trial/` with its outcome file last, so that the file's presence there marks a whole upload;
checked; downloaded. One attempt each: mnist_etc.sweep.transport retries them while a server restarts."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mnist_etc.tracking.layout import OUTCOME_FILE, TRIAL_ARTIFACT_PATH


def trial_uploaded(client: Any, run_id: str) -> bool:
    """Whether run `run_id` holds a whole trial directory under `trial/`."""
    return any(a.path == f"{TRIAL_ARTIFACT_PATH}/{OUTCOME_FILE}"
               for a in client.list_artifacts(run_id, TRIAL_ARTIFACT_PATH))


class TrialFiles:
    """Trial directories in the runs of one tracking store."""

    def __init__(self, tracking_uri: str):
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri)

    def upload(self, run_id: str, directory: Path) -> None:
        """The published trial directory to run `run_id` under `trial/`, its outcome file last."""
        directory = Path(directory)
        for child in sorted(directory.iterdir()):
            if child.name == OUTCOME_FILE:
                continue
            if child.is_dir():
                self.client.log_artifacts(run_id, str(child), f"{TRIAL_ARTIFACT_PATH}/{child.name}")
            else:
                self.client.log_artifact(run_id, str(child), TRIAL_ARTIFACT_PATH)
        self.client.log_artifact(run_id, str(directory / OUTCOME_FILE), TRIAL_ARTIFACT_PATH)

    def uploaded(self, run_id: str) -> bool:
        return trial_uploaded(self.client, run_id)

    def download(self, run_id: str, dst: Path) -> Path:
        """Run `run_id`'s `trial/` into directory `dst`; returns where MLflow put it (`dst/trial`)."""
        return Path(self.client.download_artifacts(run_id, TRIAL_ARTIFACT_PATH, str(dst)))
