"""The privacy audit of a deployed model: what an outsider can learn from the served endpoint.

Four measurements on one model (`run_audit`):
- the epsilon statement of its training (from its model.json);
- the hill-climbing reconstruction attack with candidate images scored by the *served* model (any
  `Score` callable: in production a Triton client), so the audit attacks the deployed surface;
- the same attack against the in-process model (the latent-space attack of the core library), for
  comparison: both should agree if the served model is the trained one;
- a loss-threshold membership-inference test (AUC, attacker advantage) through the served model.

`judge` compares the result with a leakage bound and with the previous audit of the same lineage; the
audit fails when leakage exceeds the bound or grew by more than the margin.
"""
from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnist_etc.privacy.attacks.hill_climb import Score, attack_model
from mnist_etc.config import AttackConfig, to_dict
from mnist_etc.data import DataSplit
from mnist_etc.errors import UserError
from mnist_etc.privacy.membership import loss_threshold_attack
from mnist_etc.model_store import StoredModel


@dataclass(frozen=True)
class AuditConfig:
    attack: AttackConfig = field(default_factory=lambda: AttackConfig(victims=4, n_iter=128, n_samples=128,
                                                                      n_best=32))
    membership_samples: int = 500
    leakage_bound: float = 0.9       # fail when the served attack's mean direct cosine exceeds this
    growth_margin: float = 0.05      # fail when it grew by more than this since the previous audit
    compare_in_process: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.leakage_bound <= 1:
            raise UserError(f"leakage_bound must be a cosine similarity in (0, 1], got {self.leakage_bound!r}.")
        if not 0 <= self.growth_margin <= 1:
            raise UserError(f"growth_margin must be a number in [0, 1], got {self.growth_margin!r}.")
        if isinstance(self.membership_samples, bool) or not isinstance(self.membership_samples, int) \
                or self.membership_samples < 10:
            raise UserError(f"membership_samples must be an integer >= 10, got {self.membership_samples!r}.")

    def as_dict(self) -> dict[str, Any]:
        return {"attack": to_dict(self.attack), "membership_samples": self.membership_samples,
                "leakage_bound": self.leakage_bound, "growth_margin": self.growth_margin,
                "compare_in_process": self.compare_in_process}


def run_audit(stored: StoredModel, split: DataSplit, served_score: Score, cfg: AuditConfig,
              progress: bool = True) -> dict[str, Any]:
    """Measure; returns the audit record (no verdict yet, see `judge`) and the served attack's images."""
    calls = {"images": 0, "seconds": 0.0}

    def counted(images):
        t0 = time.perf_counter()
        out = served_score(images)
        calls["seconds"] += time.perf_counter() - t0
        calls["images"] += len(images)
        return out

    served = attack_model(stored.networks, split, cfg.attack, progress=progress, score=counted)
    record: dict[str, Any] = {
        "model_path": str(stored.path),
        "config": cfg.as_dict(),
        "privacy": stored.record["privacy"],
        "served_attack": {"summary": served.summary, "baseline": served.baseline, "queries": served.queries,
                          "seconds": served.seconds,
                          "images_per_second": calls["images"] / max(calls["seconds"], 1e-9)},
    }
    if cfg.compare_in_process:
        local = attack_model(stored.networks, split, cfg.attack, progress=progress)
        record["in_process_attack"] = {"summary": local.summary, "seconds": local.seconds}
    record["membership"] = loss_threshold_attack(counted, split, n=cfg.membership_samples,
                                                 seed=cfg.attack.seed).as_dict()
    record["_served_result"] = served
    return record


def judge(record: dict[str, Any], previous: dict[str, Any] | None, cfg: AuditConfig) -> dict[str, Any]:
    leakage = record["served_attack"]["summary"]["direct_cosine"]
    reasons = []
    if leakage > cfg.leakage_bound:
        reasons.append(f"leakage {leakage:.4f} exceeds the bound {cfg.leakage_bound:.4f}")
    growth = None
    if previous is not None:
        growth = leakage - previous["served_attack"]["summary"]["direct_cosine"]
        if growth > cfg.growth_margin:
            reasons.append(f"leakage grew by {growth:.4f} since the audit of {previous['created']}, more than "
                           f"the margin {cfg.growth_margin:.4f}")
    return {"passed": not reasons, "reasons": reasons, "leakage": leakage, "growth": growth,
            "previous": previous.get("created") if previous else None}



def audit_summary(rec: dict[str, Any]) -> dict[str, Any]:
    """The few figures a caller (the flow's return value, the pipeline's summary) needs from an audit record."""
    v = rec["verdict"]
    return {"passed": v["passed"], "leakage": v["leakage"], "growth": v["growth"], "report": rec["report_dir"],
            "membership_auc": rec["membership"]["auc"], "epsilon": rec["privacy"]["epsilon"],
            "triton_images_per_second": rec["served_attack"]["images_per_second"]}


def previous_audit(audits_dir: Path, lineage: str) -> dict[str, Any] | None:
    """The newest earlier audit record of the same model lineage (registered model name or path)."""
    found = []
    for path in Path(audits_dir).glob("*/audit.json"):
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a damaged old report must not stop tonight's audit
        if rec.get("lineage") == lineage:
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
