"""An attack on disk: `attack.json` (config, attack and threat model, the non-member victims, per-victim and
summary scores, both baselines) and `grid.png` (victims on top, then reconstructions, the label-only baseline and
the attacker's prior).

No training data by default: the grid shows held-out non-members only, and attack.json holds no member's
index, image or score and no aggregate of members but the member - non-member gap. What the attack measured on
members stays in `members.json` beside it, a local file that nothing publishes (MLflow, Prefect). With
`show_training_data` the grid shows members (left) beside non-members (right) and its title says so.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from mnist_etc.atomic import staged_dir, write_json_atomic
from mnist_etc.images import save_pair_grid
from mnist_etc.audit.attacks.runner import AttackResult

GRID_ROWS = "held-out victims / reconstructions / label-only baseline / attacker's prior"
TRAINING_DATA_TITLE = "SHOWS TRAINING DATA: 10 training members (left), 10 held-out non-members (right)"
MEMBERS_FILE = "members.json"   # local only: never logged to MLflow or Prefect
# Aggregates of members alone: kept out of what is published (the gap, an audit figure, stays).
MEMBER_SUMMARY_KEYS = ("member_excess_cosine", "member_excess_cosine_low", "member_excess_cosine_high",
                       "member_direct_cosine")


def published_summary(summary: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in summary.items() if k not in MEMBER_SUMMARY_KEYS}


def attack_record(result: AttackResult, model_path: Path | None, surface: str = "in-process") -> dict[str, Any]:
    """What may be published of an attack: the non-member victims, their scores, no member data."""
    v = result.victims
    non = ~v.member
    return {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": str(model_path) if model_path else None,
        "surface": surface,
        "attack": result.attack,
        "threat_model": result.threat_model,
        "config": result.config.to_dict(),
        "victims": {"non_member_index": v.index[non], "label": v.labels[non], "members_attacked": int(v.member.sum())},
        "summary": published_summary(result.summary),
        "label_baseline": result.baseline,
        "per_victim": {k: np.asarray(s)[non] for k, s in result.scores.items()},
        "iterations": result.iterations,
        "queries": result.queries,
        "seconds": result.seconds,
        "victims_per_second": result.victims_per_second,
        "grid_rows": GRID_ROWS,
    }


GRID_PER_GROUP = 10


def member_record(result: AttackResult) -> dict[str, Any]:
    """What the attack measured on training members: local only (MEMBERS_FILE)."""
    v = result.victims
    return {"note": "training members: keep local, do not publish", "index": v.index[v.member],
            "label": v.labels[v.member], "per_victim": {k: np.asarray(s)[v.member] for k, s in result.scores.items()},
            "summary": {k: result.summary[k] for k in MEMBER_SUMMARY_KEYS if k in result.summary}}


def save_grid(result: AttackResult, path: Path, show_training_data: bool = False) -> None:
    """The first 2 x `GRID_PER_GROUP` non-members; with `show_training_data`, the first `GRID_PER_GROUP` members
    beside the first `GRID_PER_GROUP` non-members, titled so."""
    member = result.victims.member
    if show_training_data and member.any():
        cols = np.concatenate([np.flatnonzero(member)[:GRID_PER_GROUP], np.flatnonzero(~member)[:GRID_PER_GROUP]])
        title = TRAINING_DATA_TITLE
    else:
        cols, title = np.flatnonzero(~member)[:2 * GRID_PER_GROUP], None
    save_pair_grid(result.originals[cols], result.reconstructions[cols], path,
                   extra_rows=[result.label_baseline_images[cols], result.prior_baseline_images[cols]], title=title)


def save_attack(result: AttackResult, out_dir: Path, model_path: Path | None = None,
                surface: str = "in-process", show_training_data: bool = False) -> Path:
    with staged_dir(Path(out_dir)) as tmp:
        save_grid(result, tmp / "grid.png", show_training_data)
        write_json_atomic(tmp / "attack.json", attack_record(result, model_path, surface))
        if result.victims.member.any():
            write_json_atomic(tmp / MEMBERS_FILE, member_record(result))
    return Path(out_dir)


HEADLINE_ROWS = (("excess_cosine", "excess over label-only (headline)"),
                 ("member_excess_cosine", "  members"), ("nonmember_excess_cosine", "  non-members"),
                 ("member_gap", "member - non-member gap"))


def headline_lines(summary: dict[str, float]) -> list[str]:
    """The headline figures with their 95% intervals, one per line (CLI and reports); member rows only when
    members were attacked."""
    lines = [f"{label}: {summary[key]:+.4f} [{summary[key + '_low']:+.4f}, {summary[key + '_high']:+.4f}]"
             for key, label in HEADLINE_ROWS if key in summary]
    lines.append(f"direct cosine {summary['direct_cosine']:.4f}; label-only baseline "
                 f"{summary['label_baseline_cosine']:.4f}; attacker's prior {summary['prior_baseline_cosine']:.4f}")
    lines.append(f"identification rate {summary['identification_rate']:.3f} (chance "
                 f"{summary['identification_chance']:.3f}); class match {summary['class_match']:.3f}")
    return lines
