"""Where an export starts from: a trained-model directory, a sweep's winner.json, or an MLflow model.

    >>> src = resolve_source()                                   # newest artifacts/sweeps/*/winner.json
    >>> src = source_from_model_dir("artifacts/models/dev")
    >>> src = source_from_mlflow("models:/mnist_etc@champion", tracking_uri, Path("artifacts/mlflow_downloads"))
    >>> src.model_dir, src.info, src.mlflow_run_id
    >>> check_source(mlflow_model="models:/mnist-etc-smoke@champion")   # the checks alone, nothing downloaded
    >>> champion_uri(None)           # models:/<registered model of the newest sweep winner>@champion
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnist_etc.atomic import staged_dir
from mnist_etc.errors import UserError
from mnist_etc.tracking.layout import CHAMPION_ALIAS, tracking_uri_or_default
from mnist_etc.tracking.store import check_tracking_uri

SWEEPS_DIR = Path("artifacts/sweeps")
RUN_ID_KEYS = ("mlflow_run_id", "run_id")
TRACKING_URI_KEYS = ("mlflow_tracking_uri", "tracking_uri")


@dataclass(frozen=True)
class ExportSource:
    model_dir: Path
    info: dict[str, Any] = field(default_factory=dict)   # goes into export.json as provenance
    mlflow_run_id: str | None = None                       # the training run the ONNX model is logged next to
    tracking_uri: str | None = None


def _require_model_dir(path: Path, origin: str) -> Path:
    if not (path / "model.json").is_file():
        raise UserError(f"{origin} names {str(path)!r}, which is not a trained-model directory (no model.json); "
                        f"pass --model DIR written by 'mnist-etc train'.")
    return path


def source_from_model_dir(path: str | Path) -> ExportSource:
    path = Path(path)
    return ExportSource(_require_model_dir(path, "--model"), {"kind": "model_dir"})


def newest_winner(sweeps_dir: Path = SWEEPS_DIR) -> Path:
    found = sorted(Path(sweeps_dir).glob("*/winner.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise UserError(f"no sweep winner found (no {sweeps_dir}/<study>/winner.json); run 'mnist-etc sweep' "
                        f"first, or pass --model DIR, --winner FILE or --mlflow-model URI.")
    return found[-1]


def source_from_winner(path: str | Path) -> ExportSource:
    path = Path(path)
    try:
        winner = json.loads(path.read_text())
        model_dir = Path(winner["model_dir"])
    except FileNotFoundError:
        raise UserError(f"winner file {str(path)!r} does not exist; pass a sweep's winner.json.") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"winner file {str(path)!r} is not valid: it must be JSON holding \"model_dir\" "
                        f"({type(exc).__name__}: {exc}).") from None
    if not model_dir.is_absolute() and not (model_dir / "model.json").is_file():
        model_dir = path.parent / model_dir   # a path relative to the winner file rather than to the cwd
    _require_model_dir(model_dir, f"winner file {str(path)!r}")
    # The sweep writes {"mlflow": {"run_id", "tracking_uri", ...}}; flat keys are accepted too.
    mlflow_info = winner.get("mlflow") if isinstance(winner.get("mlflow"), dict) else {}
    run_id = mlflow_info.get("run_id") or next((winner[k] for k in RUN_ID_KEYS if winner.get(k)), None)
    uri = mlflow_info.get("tracking_uri") or next((winner[k] for k in TRACKING_URI_KEYS if winner.get(k)), None)
    info = {"kind": "sweep_winner", "winner_json": str(path.resolve()),
            **{k: winner[k] for k in ("study", "trial", "values", "epsilon", "qualified", "reason") if k in winner}}
    return ExportSource(model_dir, info, run_id, uri)


def resolve_source(model_dir: str | Path | None = None, winner: str | Path | None = None,
                   mlflow_model: str | None = None, tracking_uri: str | None = None,
                   download_dir: Path = Path("artifacts/mlflow_downloads")) -> ExportSource:
    """Exactly one of the three sources, or the newest sweep winner when none is given."""
    given = [name for name, v in (("--model", model_dir), ("--winner", winner), ("--mlflow-model", mlflow_model))
             if v is not None]
    if mlflow_model is not None and tracking_uri is None:
        tracking_uri = tracking_uri_or_default(None)
    if len(given) > 1:
        raise UserError(f"give one export source, not {' and '.join(given)}.")
    if model_dir is not None:
        return source_from_model_dir(model_dir)
    if mlflow_model is not None:
        return source_from_mlflow(mlflow_model, tracking_uri, download_dir)
    return source_from_winner(winner if winner is not None else newest_winner())


def source_from_mlflow(uri: str, tracking_uri: str | None, download_dir: Path) -> ExportSource:
    """`models:/<name>@<alias>`, `models:/<name>/<version>` or `runs:/<run id>/<path>` whose artifacts hold a
    trained-model directory (a model.json and its weights), downloaded under `download_dir`
    (mnist_etc.tracking.registry resolves and downloads)."""
    from mnist_etc.tracking.registry import download_model, resolve_model

    ref = resolve_model(uri, tracking_uri)
    # One directory per run, published whole: it becomes the export's recorded source model_dir.
    with staged_dir(Path(download_dir) / f"run-{ref.run_id}") as tmp:
        fetched = download_model(ref, tracking_uri, tmp)
        relative = fetched.relative_to(tmp.resolve()) if fetched.is_relative_to(tmp.resolve()) else Path()
    local = Path(download_dir) / f"run-{ref.run_id}" / relative
    found = [local] if local.name == "model.json" else ([] if local.is_file() else list(local.rglob("model.json")))
    candidates = sorted(p.parent for p in found)
    if not candidates:
        raise UserError(f"the artifacts of MLflow model {uri!r} hold no trained-model directory (no model.json); "
                        f"register a run whose artifacts contain the model directory.")
    info = {"kind": "mlflow", "mlflow_model": uri, "mlflow_run_id": ref.run_id}
    return ExportSource(candidates[0], info, ref.run_id, tracking_uri)


def champion_uri(champion: str | None, sweeps_dir: Path = SWEEPS_DIR) -> str:
    """`champion`, or `models:/<registered model of the newest sweep winner>@champion`."""
    if champion:
        return champion
    winner_file = newest_winner(sweeps_dir)
    try:
        winner = json.loads(winner_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"winner file {str(winner_file)!r} is not valid JSON ({exc}); rerun the sweep or pass "
                        f"--champion models:/<name>@{CHAMPION_ALIAS}.") from None
    name = (winner.get("mlflow") or {}).get("registered_model") if isinstance(winner, dict) else None
    if not name:
        raise UserError(f"the newest sweep winner ({winner_file}) is not registered in MLflow; pass "
                        f"--champion models:/<name>@{CHAMPION_ALIAS} or rerun the sweep.")
    return f"models:/{name}@{CHAMPION_ALIAS}"


def lineage_of(uri: str) -> str:
    """`models:/mnist-etc-smoke@champion` -> `mnist-etc-smoke`: audits of one registered model compare."""
    return uri.split(":/", 1)[-1].lstrip("/").split("@")[0].split("/")[0]


def check_champion(champion: str | None, tracking_uri: str | None = None) -> str:
    """The champion's MLflow reference, resolved in its tracking store without downloading anything: a missing
    winner, an unregistered one, a bad reference or a store without it is one sentence, before any flow runs."""
    from mnist_etc.tracking.registry import check_model_reference

    uri = champion_uri(champion)
    check_model_reference(uri, tracking_uri)
    return uri


def check_source(model_dir: str | Path | None = None, winner: str | Path | None = None,
                 mlflow_model: str | None = None, tracking_uri: str | None = None) -> None:
    """What `resolve_source` would refuse, found without downloading or loading anything."""
    given = [name for name, v in (("--model", model_dir), ("--winner", winner), ("--mlflow-model", mlflow_model))
             if v is not None]
    if len(given) > 1:
        raise UserError(f"give one export source, not {' and '.join(given)}.")
    if tracking_uri is not None:
        check_tracking_uri(tracking_uri)
    if mlflow_model is not None:
        from mnist_etc.tracking.registry import check_model_reference

        check_model_reference(mlflow_model, tracking_uri)
    elif model_dir is not None:
        source_from_model_dir(model_dir)
    else:
        source_from_winner(winner if winner is not None else newest_winner())
