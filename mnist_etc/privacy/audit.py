"""The privacy audit of a deployed model: what it reveals, measured from outside, and a verdict that gates.

Measurements on one model (`run_audit`):
- the epsilon of its training (from its model.json: PLD headline, RDP beside);
- the public-prior reconstruction attack (an outsider) with every candidate scored by the *served* model
  (any `Score` callable: in production a Triton client), on at least 50 training members and 50 held-out
  non-members: excess cosine over the label-only baseline with a bootstrap 95% interval;
- the same attacker in process (the served model must agree), and the own-decoder attack in process (what
  an insider with the weights gets), for the record;
- confidence-threshold membership inference through the served model: AUC with a 95% interval, p-value,
  split-half advantage, TPR at 0.1% and 1% FPR;
- the one-run canary audit (`mnist_etc.privacy.canary`, on by default when the model is DP): an empirical
  lower bound on epsilon from one training run of the model's configuration with canaries, which must not
  exceed the accounted epsilon.

`judge` runs the policy's tests (`AuditConfig`): each has a figure, a bound and a verdict; the audit passes
only when every test passes.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from mnist_etc.data import DataSplit
from mnist_etc.errors import UserError
from mnist_etc.model_store import StoredModel
from mnist_etc.privacy.attacks.hill_climb import Score, compiled
from mnist_etc.privacy.attacks.runner import AttackResult, attack_model, check_attack_inputs
from mnist_etc.privacy.audit_policy import SERVED_ATTACK, AuditConfig
from mnist_etc.privacy.canary import describe as describe_canary_audit
from mnist_etc.privacy.membership import loss_threshold_attack

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
    return {"attack": result.attack, "threat_model": result.threat_model, "summary": result.summary,
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
                                                 seed=cfg.attack.seed, scores_out=scores).as_dict()
    record["_served_result"] = served
    record["_membership_scores"] = scores
    return record


def epsilon_of(record: dict[str, Any]) -> float:
    """The record's epsilon as a float ("inf" in JSON is infinity)."""
    try:
        return float(record["privacy"]["epsilon"])
    except (KeyError, TypeError, ValueError):
        return math.inf


def _test(name: str, figure: Any, bound: str, passed: bool, explanation: str) -> dict[str, Any]:
    return {"name": name, "figure": figure, "bound": bound, "passed": bool(passed), "explanation": explanation}


def comparable_excess(previous: Any, attack: str) -> float | None:
    """The served excess cosine of an earlier audit record, or None when it has no comparable figure (an
    old-format record measured raw cosine with another attack API; another attacker measures something else)."""
    served = previous.get("served_attack") if isinstance(previous, dict) else None
    summary = served.get("summary") if isinstance(served, dict) else None
    if not isinstance(summary, dict) or served.get("attack") != attack:
        return None
    try:
        value = float(summary["excess_cosine"])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def judge(record: dict[str, Any], previous: dict[str, Any] | None, cfg: AuditConfig) -> dict[str, Any]:
    """Every test of the policy with its figure, bound and verdict; passed only if all pass."""
    tests = []
    eps = epsilon_of(record)
    if math.isinf(eps):
        ok = cfg.allow_non_private
        tests.append(_test("epsilon", "inf", f"<= {cfg.max_epsilon:g}" + (" (inf allowed)" if ok else ""), ok,
                           "the model has a non-private stage (epsilon = inf)" + (
                               ", which this policy allows" if ok else
                               "; the policy does not allow that (allow_non_private is false)")))
    else:
        ok = eps <= cfg.max_epsilon
        tests.append(_test("epsilon", eps, f"<= {cfg.max_epsilon:g}", ok,
                           f"epsilon {eps:.3g} {'within' if ok else 'above'} the bound {cfg.max_epsilon:g}"))
    s = record["served_attack"]["summary"]
    low = s["excess_cosine_low"]
    ok = low <= cfg.leakage_bound
    tests.append(_test("excess_leakage", s["excess_cosine"], f"95% interval low end <= {cfg.leakage_bound:g}", ok,
                       f"excess cosine over the label-only baseline {s['excess_cosine']:+.4f} "
                       f"[{low:+.4f}, {s['excess_cosine_high']:+.4f}]: "
                       + ("not shown to exceed the bound" if ok else f"the whole interval is above {cfg.leakage_bound:g}")))
    m = record["membership"]
    ok = m["auc_low"] <= cfg.membership_auc_bound
    tests.append(_test("membership", m["auc"], f"95% interval low end <= {cfg.membership_auc_bound:g}", ok,
                       f"membership AUC {m['auc']:.4f} [{m['auc_low']:.4f}, {m['auc_high']:.4f}]: "
                       + ("not shown to exceed the bound" if ok else
                          f"the whole interval is above {cfg.membership_auc_bound:g}")))
    canary = record.get("canary_audit")
    if canary is not None:
        acc = float(canary["accounted_epsilon"])
        tests.append(_test("canary_audit", canary["epsilon_lb"],
                           f"<= accounted epsilon {'inf' if math.isinf(acc) else f'{acc:.3g}'} of the audit run",
                           canary["consistent"], describe_canary_audit(canary)))
    growth = None
    before = comparable_excess(previous, record["served_attack"].get("attack", SERVED_ATTACK))
    if before is None:
        tests.append(_test("growth", None, f"<= {cfg.growth_margin:g}", True,
                           "no earlier audit of this lineage with an excess cosine of the same attacker to compare "
                           "with" + (f" (the audit of {previous.get('created')} has none)" if previous else "")))
    else:
        growth = s["excess_cosine"] - before
        ok = growth <= cfg.growth_margin
        tests.append(_test("growth", growth, f"<= {cfg.growth_margin:g}", ok,
                           f"excess cosine changed by {growth:+.4f} since the audit of {previous.get('created')} "
                           f"({'within' if ok else 'beyond'} the margin {cfg.growth_margin:g})"))
    reasons = [f"{t['name']}: {t['explanation']}" for t in tests if not t["passed"]]
    return {"passed": not reasons, "tests": tests, "reasons": reasons, "leakage": s["excess_cosine"],
            "growth": growth, "previous": previous.get("created") if previous else None}


def audit_summary(rec: dict[str, Any]) -> dict[str, Any]:
    """The few figures a caller (the flow's return value, the pipeline's summary) needs from an audit record."""
    v = rec["verdict"]
    s = rec["served_attack"]["summary"]
    m = rec["membership"]
    c = rec.get("canary_audit")
    return {"passed": v["passed"], "reasons": v["reasons"],
            "tests": [{k: t[k] for k in ("name", "figure", "bound", "passed")} for t in v["tests"]],
            "leakage": s["excess_cosine"], "leakage_interval": [s["excess_cosine_low"], s["excess_cosine_high"]],
            "growth": v["growth"], "report": rec["report_dir"], "membership_auc": m["auc"],
            "membership_auc_interval": [m.get("auc_low"), m.get("auc_high")],
            "membership_p_value": m.get("p_value"), "membership_tpr_at_0_1pct_fpr": m.get("tpr_at_0_1pct_fpr"),
            "membership_tpr_at_1pct_fpr": m.get("tpr_at_1pct_fpr"), "epsilon": epsilon_of(rec),
            "epsilon_lb": c["epsilon_lb"] if c else None, "canary_audit_consistent": c["consistent"] if c else None,
            "triton_images_per_second": rec["served_attack"]["images_per_second"]}


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
