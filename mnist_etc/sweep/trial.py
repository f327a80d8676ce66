"""One sweep trial: train with the sampled settings, attack the model, publish `trial-<n>/` whole.

The trial never touches the Optuna storage: it gets a `TrialSpec` (plain data, picklable, JSON-able, so
it can cross a thread, a process or a network) and returns a `TrialOutcome`; the orchestrator tells
Optuna. Per-epoch metrics go straight to the trial's MLflow run when the spec names one
(mnist_etc.tracking.epochs).

    artifacts/sweeps/<study>/trial-<n>/
        config.json     the spec: study, trial number, sampled params, full train/data/attack settings
        model/          model.json + weights + per-epoch example images (mnist_etc.model_store)
        attack/         attack.json + grid.png of the configured attacker (mnist_etc.audit.attacks.report)
        images/         autoencoder_grid.png, attack_grid.png (shown by the Optuna dashboard)
        outcome.json    objectives and user attributes; written last, so its presence marks a finished trial
"""
from __future__ import annotations

import functools
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mnist_etc.atomic import jsonable, staged_dir, write_json_atomic
from mnist_etc.audit.attacks.config import AttackConfig
from mnist_etc.config import DataConfig, TrainConfig
from mnist_etc.tracking.epochs import EPOCH_METRICS_ATTR, MlflowEpochLogger, epoch_metrics_status
from mnist_etc.tracking.layout import OUTCOME_FILE


@dataclass(frozen=True)
class TrialSpec:
    study: str
    number: int
    params: dict[str, Any]
    train: TrainConfig             # the full training config (fixed settings + params), validated once
    data: DataConfig
    attack: AttackConfig
    trial_dir: str
    objectives: tuple[str, str]    # (accuracy metric, leakage metric)
    mlflow_tracking_uri: str | None = None
    mlflow_run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "train": self.train.to_dict(), "data": self.data.to_dict(),
                "attack": self.attack.to_dict()}


@dataclass
class TrialOutcome:
    number: int
    values: list[float]                                   # [accuracy, leakage]
    user_attrs: dict[str, Any]                            # flat: numbers, text, paths
    metrics: dict[str, float] = field(default_factory=dict)   # everything numeric, for MLflow
    history: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)      # PNGs to show in the Optuna dashboard
    recovered: bool = False                               # read back from outcome.json after a kill

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrialOutcome":
        return cls(**d)


def trial_dir(study_dir: Path, number: int) -> Path:
    return Path(study_dir) / f"trial-{number}"


def read_outcome(directory: Path) -> TrialOutcome | None:
    """The outcome a finished trial published, or None if the trial did not finish."""
    path = Path(directory) / OUTCOME_FILE
    if not path.is_file():
        return None
    try:
        outcome = TrialOutcome.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError):
        return None
    outcome.values = [float(v) for v in outcome.values]
    return outcome


@functools.lru_cache(maxsize=4)
def cached_split(data_cfg: DataConfig) -> Any:
    """Trials of one sweep share the split: load it once per process (DataConfig is frozen, hashable)."""
    from mnist_etc.data import load_split

    return load_split(data_cfg)


def run_trial(spec: TrialSpec) -> TrialOutcome:
    """Train, attack and publish `spec.trial_dir` atomically; raises on any failure (nothing is left)."""
    from mnist_etc.audit.attacks.report import save_attack
    from mnist_etc.audit.attacks.runner import attack_model
    from mnist_etc.images import save_pair_grid
    from mnist_etc.model_store import train_and_save
    from mnist_etc.training import example_images

    t0 = time.perf_counter()
    cfg, attack_cfg = spec.train, spec.attack
    split = cached_split(spec.data)
    final = Path(spec.trial_dir)
    hook = (MlflowEpochLogger(spec.mlflow_tracking_uri, spec.mlflow_run_id)
            if spec.mlflow_tracking_uri and spec.mlflow_run_id else None)
    with staged_dir(final) as tmp:
        write_json_atomic(tmp / "config.json", spec.to_dict())
        t_train = time.perf_counter()
        result, _ = train_and_save(cfg, split, tmp / "model", progress=False, hook=hook)
        train_seconds = time.perf_counter() - t_train
        attack = attack_model(result.networks, split, attack_cfg, progress=False)
        save_attack(attack, tmp / "attack", model_path=final / "model")

        (tmp / "images").mkdir()
        samples = example_images(split)
        rec = result.networks.decoder.predict(result.networks.encoder.predict(samples, verbose=0), verbose=0)
        save_pair_grid(samples, rec, tmp / "images" / "autoencoder_grid.png")
        shutil.copyfile(tmp / "attack" / "grid.png", tmp / "images" / "attack_grid.png")

        metrics = {**result.metrics, **attack.summary,
                   "train_seconds": train_seconds, "attack_seconds": attack.seconds}
        accuracy_metric, leakage_metric = spec.objectives
        values = [float(metrics[accuracy_metric]), float(metrics[leakage_metric])]
        privacy = result.privacy
        user_attrs = {
            "epsilon": privacy.epsilon if math.isfinite(privacy.epsilon) else "inf",
            "epsilon_rdp": privacy.epsilon_rdp if math.isfinite(privacy.epsilon_rdp) else "inf",
            "dp_randomness": privacy.randomness,
            "delta": privacy.delta,
            "private": math.isfinite(privacy.epsilon),
            **{k: round(float(v), 6) for k, v in metrics.items()},
            "trial_dir": str(final),
            "model_dir": str(final / "model"),
            "attack_dir": str(final / "attack"),
            EPOCH_METRICS_ATTR: epoch_metrics_status(hook),
        }
        user_attrs["trial_seconds"] = round(time.perf_counter() - t0, 3)
        metrics["trial_seconds"] = user_attrs["trial_seconds"]
        if math.isfinite(privacy.epsilon):
            metrics["epsilon"] = privacy.epsilon
            metrics["epsilon_rdp"] = privacy.epsilon_rdp
        outcome = TrialOutcome(spec.number, values, user_attrs, metrics, result.history,
                               images=[str(final / "images" / "autoencoder_grid.png"),
                                       str(final / "images" / "attack_grid.png")])
        write_json_atomic(tmp / OUTCOME_FILE, jsonable(outcome.to_dict()))
    return outcome
