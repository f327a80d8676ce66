"""An attack on disk: `attack.json` (config, attack and threat model, victims of both groups, per-victim
and summary scores, both baselines) and `grid.png` (victims on top, then reconstructions, the label-only
baseline and the attacker's prior; members on the left, non-members on the right)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from mnist_etc.atomic import staged_dir, write_json_atomic
from mnist_etc.images import save_pair_grid
from mnist_etc.audit.attacks.runner import AttackResult

GRID_ROWS = "victims (10 members left, 10 non-members right) / reconstructions / label-only baseline / attacker's prior"


def attack_record(result: AttackResult, model_path: Path | None, surface: str = "in-process") -> dict[str, Any]:
    v = result.victims
    return {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": str(model_path) if model_path else None,
        "surface": surface,
        "attack": result.attack,
        "threat_model": result.threat_model,
        "config": result.config.to_dict(),
        "victims": {"member": v.member, "index": v.index, "label": v.labels},
        "summary": result.summary,
        "label_baseline": result.baseline,
        "per_victim": result.scores,
        "iterations": result.iterations,
        "queries": result.queries,
        "seconds": result.seconds,
        "victims_per_second": result.victims_per_second,
        "grid_rows": GRID_ROWS,
    }


GRID_PER_GROUP = 10


def save_grid(result: AttackResult, path: Path) -> None:
    """The first `GRID_PER_GROUP` members and non-members (all victims are in attack.json)."""
    member = result.victims.member
    cols = np.concatenate([np.flatnonzero(member)[:GRID_PER_GROUP], np.flatnonzero(~member)[:GRID_PER_GROUP]])
    save_pair_grid(result.originals[cols], result.reconstructions[cols], path,
                   extra_rows=[result.label_baseline_images[cols], result.prior_baseline_images[cols]])


def save_attack(result: AttackResult, out_dir: Path, model_path: Path | None = None,
                surface: str = "in-process") -> Path:
    with staged_dir(Path(out_dir)) as tmp:
        save_grid(result, tmp / "grid.png")
        write_json_atomic(tmp / "attack.json", attack_record(result, model_path, surface))
    return Path(out_dir)


HEADLINE_ROWS = (("excess_cosine", "excess over label-only (headline)"),
                 ("member_excess_cosine", "  members"), ("nonmember_excess_cosine", "  non-members"),
                 ("member_gap", "member - non-member gap"))


def headline_lines(summary: dict[str, float]) -> list[str]:
    """The headline figures with their 95% intervals, one per line (CLI and reports)."""
    lines = [f"{label}: {summary[key]:+.4f} [{summary[key + '_low']:+.4f}, {summary[key + '_high']:+.4f}]"
             for key, label in HEADLINE_ROWS]
    lines.append(f"direct cosine {summary['direct_cosine']:.4f}; label-only baseline "
                 f"{summary['label_baseline_cosine']:.4f}; attacker's prior {summary['prior_baseline_cosine']:.4f}")
    lines.append(f"identification rate {summary['identification_rate']:.3f} (chance "
                 f"{summary['identification_chance']:.3f}); class match {summary['class_match']:.3f}")
    return lines
