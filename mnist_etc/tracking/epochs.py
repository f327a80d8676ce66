"""A trial's per-epoch metrics, live to its MLflow run while it trains (the training hook), and whether they
went there: the trial records it in its user attributes, the sweep's tracker reads it and logs the whole
history afterwards when they did not.

    hook = MlflowEpochLogger(tracking_uri, run_id)         # train_and_save(..., hook=hook)
    user_attrs[EPOCH_METRICS_ATTR] = epoch_metrics_status(hook)
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any

EPOCH_METRICS_ATTR = "mlflow_epoch_metrics"   # a trial's user attribute: "live", "failed: <why>" or "off"
LIVE = "live"


class MlflowEpochLogger:
    """The training hook: each epoch's metrics to the trial's MLflow run as `<stage>.<metric>` at step=epoch.

    A tracking store that is down must not fail a trial that trains fine: the first failure is reported
    and logging stops; the orchestrator then logs the whole history from the outcome instead."""

    def __init__(self, tracking_uri: str, run_id: str):
        from mlflow import MlflowClient

        self.client, self.run_id, self.error = MlflowClient(tracking_uri), run_id, None

    def __call__(self, stage: str, epoch: int, metrics: dict[str, float]) -> None:
        if self.error is not None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        try:
            self.client.log_batch(self.run_id, metrics=[
                Metric(f"{stage}.{k}", float(v), now, epoch) for k, v in metrics.items() if math.isfinite(v)])
        except Exception as exc:  # MlflowException, connection errors, SQLite errors: all non-fatal here
            self.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            print(f"trial run {self.run_id}: MLflow per-epoch logging stopped ({self.error})", file=sys.stderr)


def epoch_metrics_status(hook: MlflowEpochLogger | None) -> str:
    """What a trial records under EPOCH_METRICS_ATTR: "live" (every epoch logged), "failed: <why>" or "off"."""
    if hook is None:
        return "off"
    return LIVE if hook.error is None else f"failed: {hook.error}"


def logged_live(user_attrs: dict[str, Any]) -> bool:
    """Whether a trial's per-epoch metrics are in its run already (its history need not be logged again)."""
    return str(user_attrs.get(EPOCH_METRICS_ATTR, "")).startswith(LIVE)
