"""Put the best configuration into the model repository, first as a candidate, then (on request) as the default.

A run writes `<repository>/<served>/configs/benchmark-<run>.pbtxt`. Triton ignores it unless started with
`--model-config-name=benchmark-<run>` (its custom-configuration feature, also in the official
containers), so a benchmark never changes what is served by itself. Adopting it:

    mnist-etc benchmark --adopt artifacts/benchmarks/<run>      # or adopt_best(Path(...))

rewrites `config.pbtxt` atomically and keeps the previous one as `configs/before-<run>.pbtxt` (rollback:
copy it back, or start Triton with `--model-config-name=before-<run>`). Only the settings a benchmark
tunes are taken from the run; deployment settings (version policy, GPU ids) stay as they were.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mnist_etc.atomic import write_text_atomic
from mnist_etc.benchmark.grid import GRID_AXES, validate_run_name
from mnist_etc.errors import UserError
from mnist_etc.triton.model_config import TritonModelConfig, parse_pbtxt, to_pbtxt
from mnist_etc.triton.repository import validate_model_name

CONFIGS_DIR = "configs"


def candidate_name(run: str) -> str:
    return f"benchmark-{validate_run_name(run)}"


def tuned_onto(deployed: TritonModelConfig | None, best: TritonModelConfig) -> TritonModelConfig:
    """`deployed` with the benchmark's tuned settings taken from `best`."""
    if deployed is None:
        return best
    return deployed.replace(**{axis: getattr(best, axis) for axis in GRID_AXES})


def _header(run: str, note: str) -> str:
    return f"# {note} (mnist-etc benchmark run {run}).\n"


def write_candidate(repository: Path, served: str, backend: str, best: TritonModelConfig, run: str) -> Path:
    """Write configs/benchmark-<run>.pbtxt next to the served model's config.pbtxt; returns its path."""
    model_dir = Path(repository) / validate_model_name(served)
    current = model_dir / "config.pbtxt"
    if not current.is_file():
        raise UserError(f"model {served!r} is not in repository {str(repository)!r} ({current} not found).")
    deployed = TritonModelConfig.from_proto(parse_pbtxt(current.read_text()))
    path = model_dir / CONFIGS_DIR / f"{candidate_name(run)}.pbtxt"
    write_text_atomic(path, _header(run, "Best configuration under the latency budget")
                      + to_pbtxt(served, backend, tuned_onto(deployed, best)))
    return path


def adopt_best(run_dir: Path, repository: Path | None = None) -> dict[str, Any]:
    """Make a finished run's best configuration the served model's config.pbtxt (previous one kept)."""
    run_dir = Path(run_dir)
    best_file = run_dir / "best.json"
    if not best_file.is_file():
        raise UserError(f"{str(run_dir)!r} is not a finished benchmark run (no best.json); pass "
                        f"artifacts/benchmarks/<run>.")
    record = json.loads(best_file.read_text())
    best = (record.get("analysis") or {}).get("best")
    if not best:
        raise UserError(f"benchmark run {record.get('run')!r} found no configuration within its latency budget, so "
                        f"there is nothing to adopt.")
    run = validate_run_name(record["run"])
    served, backend = validate_model_name(record["model"]), record["backend"]
    repository = Path(repository or record["repository"])
    model_dir = repository / served
    current = model_dir / "config.pbtxt"
    if not current.is_file():
        raise UserError(f"model {served!r} is not in repository {str(repository)!r} ({current} not found); pass "
                        f"--repository.")
    old_text = current.read_text()
    deployed = TritonModelConfig.from_proto(parse_pbtxt(old_text))
    adopted = tuned_onto(deployed, TritonModelConfig.from_mapping(best["config"]))
    backup = model_dir / CONFIGS_DIR / f"before-{run}.pbtxt"
    if not backup.exists():   # adopting twice must not overwrite the real "before" with the adopted one
        write_text_atomic(backup, _header(run, "config.pbtxt before adopting the benchmark's best") + old_text)
    write_text_atomic(current, _header(run, "Adopted from the best configuration under the latency budget")
                      + to_pbtxt(served, backend, adopted))
    return {"config": str(current), "backup": str(backup), "adopted": adopted.to_dict(), "previous": deployed.to_dict(),
            "run": run, "model": served}
