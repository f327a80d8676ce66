"""An attack on disk: `attack.json` (config, seed, model, per-victim and mean scores, random-code baseline)
and `grid.png` (originals on top, reconstructions in the middle, random-code baseline below)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from mnist_etc.atomic import staged_dir, write_json_atomic
from mnist_etc.privacy.attacks.hill_climb import AttackResult
from mnist_etc.config import to_dict
from mnist_etc.images import save_pair_grid


def attack_record(result: AttackResult, model_path: Path | None, surface: str = "in-process") -> dict[str, Any]:
    return {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": str(model_path) if model_path else None,
        "surface": surface,
        "config": to_dict(result.config),
        "victim_test_indices": result.victim_indices,
        "summary": result.summary,
        "baseline": result.baseline,
        "per_victim": result.scores,
        "iterations": result.iterations,
        "queries": result.queries,
        "seconds": result.seconds,
        "victims_per_second": result.victims_per_second,
    }


def save_attack(result: AttackResult, out_dir: Path, model_path: Path | None = None,
                surface: str = "in-process") -> Path:
    with staged_dir(Path(out_dir)) as tmp:
        save_pair_grid(result.originals, result.reconstructions, tmp / "grid.png",
                       extra_rows=[result.baseline_images])
        write_json_atomic(tmp / "attack.json", attack_record(result, model_path, surface))
    return Path(out_dir)
