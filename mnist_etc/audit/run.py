"""The privacy audit of a deployed model: what it reveals, measured from outside.

Measurements on one model (`run_audit`):
- the epsilon of its training (from its model.json: PLD headline, RDP beside);
- the public-prior reconstruction attack (an outsider) with every candidate scored by the *served* model
  (any `Score` callable: in production a Triton client), on at least 50 training members and 50 held-out
  non-members: excess cosine over the label-only baseline with a bootstrap 95% interval;
- the same attacker in process (the served model must agree), and the own-decoder attack in process (what
  an insider with the weights gets), for the record;
- confidence-threshold membership inference through the served model: AUC with a 95% interval, p-value,
  split-half advantage, TPR at 0.1% and 1% FPR, and the empirical epsilon lower bound it implies
  (`membership_epsilon_lb`, at the model's delta);
- the reconstruction bound from the model's PLD beside the served attack's identification rate on members
  (`mnist_etc.audit.reconstruction`; no bound for epsilon = inf);
- the one-run canary audit (`mnist_etc.audit.canary`, on by default when the model is DP): an empirical
  lower bound on epsilon from one training run of the model's configuration with canaries, which must not
  exceed the accounted epsilon.

The record it returns is judged by `mnist_etc.audit.gates.judge` against the policy (`AuditConfig`) and
saved by `mnist_etc.audit.report`; `previous_audit` finds the record it is compared with.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from mnist_etc.audit.attacks.hill_climb import Score, compiled
from mnist_etc.audit.attacks.report import published_summary
from mnist_etc.audit.attacks.runner import AttackResult, attack_model, check_attack_inputs
from mnist_etc.audit.config import AuditConfig
from mnist_etc.audit.membership import loss_threshold_attack
from mnist_etc.data import DataSplit
from mnist_etc.errors import UserError
from mnist_etc.model_store import StoredModel


class CountedScore:
    """A `Score` that counts the images it scores and the seconds spent scoring them (images/s of a surface)."""

    def __init__(self, score: Score):
        self.score, self.images, self.seconds = score, 0, 0.0

    def __call__(self, images: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.score(images)
        self.seconds += time.perf_counter() - t0
        self.images += len(images)
        return out

    @property
    def images_per_second(self) -> float:
        return self.images / max(self.seconds, 1e-9)


def _attack_entry(result: AttackResult, scored: CountedScore) -> dict[str, Any]:
    return {"attack": result.attack, "threat_model": result.threat_model, "summary": published_summary(result.summary),
            "label_baseline": result.baseline, "queries": result.queries, "seconds": result.seconds,
            "images_scored": scored.images, "images_per_second": scored.images_per_second}


def run_audit(stored: StoredModel, split: DataSplit, served_score: Score, cfg: AuditConfig,
              progress: bool = True, cache_dir: Path | None = None) -> dict[str, Any]:
    """Measure; returns the audit record (no verdict yet, see `judge`) and the served attack's result."""
    check_attack_inputs(split, cfg.attack)
    served_counted = CountedScore(served_score)
    served = attack_model(stored.networks, split, cfg.attack, progress=progress, score=served_counted,
                          cache_dir=cache_dir)
    record: dict[str, Any] = {
        "model_path": str(stored.path),
        "config": cfg.as_dict(),
        "privacy": stored.record["privacy"],
        "served_attack": _attack_entry(served, served_counted),
    }
    if cfg.compare_in_process:
        in_process = compiled(stored.networks.full_model())
        for key, attack_cfg in (("in_process_attack", cfg.attack),
                                ("own_decoder_attack", cfg.attack.replace(attack="own-decoder"))):
            counted = CountedScore(in_process)
            result = attack_model(stored.networks, split, attack_cfg, progress=progress, score=counted,
                                  cache_dir=cache_dir)
            record[key] = _attack_entry(result, counted)
    scores: dict[str, np.ndarray] = {}
    record["membership"] = loss_threshold_attack(served_score, split, n=cfg.membership_samples,
                                                 seed=cfg.attack.seed, scores_out=scores,
                                                 delta=stored.config.delta).as_dict()
    record["reconstruction"] = reconstruction_of(stored, split, served)
    record["_served_result"] = served
    record["_membership_scores"] = scores
    return record


def reconstruction_of(stored: StoredModel, split: DataSplit, served: AttackResult) -> dict[str, Any]:
    """The `reconstruction` section: the served attack's identification on members and non-members, and the
    bound of the model's training (its events at the n_train its model.json accounted; none for epsilon = inf)."""
    from mnist_etc.dp.accounting import training_events
    from mnist_etc.audit.reconstruction import reconstruction_record

    n_train = int(stored.record.get("data", {}).get("n_train", 0)) or split.n_train
    events = training_events(stored.config, n_train) if math.isfinite(stored.epsilon) else None
    candidates = round(1 / served.summary["identification_chance"])
    return reconstruction_record(served.scores["identification_rank"], served.victims.member, events, candidates)


def previous_audit(audits_dir: Path, lineage: str) -> dict[str, Any] | None:
    """The newest earlier audit record of the same model lineage (registered model name or path)."""
    found = []
    for path in Path(audits_dir).glob("*/audit.json"):
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a damaged old report must not stop tonight's audit
        if isinstance(rec, dict) and rec.get("lineage") == lineage and isinstance(rec.get("created"), str):
            found.append(rec)
    return max(found, key=lambda r: r["created"]) if found else None


def audit_dir_name(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H%M%SZ")


def served_version_of(repository: Path, served: str, stored: StoredModel) -> int:
    """The newest version of `served` in the Triton repository exported from this trained model.

    A model is identified by its training record (creation time and config), which survives copies of
    the model directory (an MLflow download of the champion is a copy of the sweep trial's directory).
    """
    from mnist_etc.triton.repository import export_record, versions

    key = (stored.record.get("created"), stored.record.get("config"))
    for version in reversed(versions(Path(repository), served)):
        _, rec = export_record(Path(repository), served, version)
        src = rec.get("source", {})
        if (src.get("created"), src.get("config")) == key:
            return version
    raise UserError(f"no version of {served!r} in {str(repository)!r} was exported from {str(stored.path)!r}; "
                    f"export the champion first ('mnist-etc export').")
