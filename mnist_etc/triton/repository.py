"""The Triton model repository: one ONNX export, published as a new version under two backends.

    triton/model_repository/
        <model>/        config.pbtxt (backend "python")             <- the embedded, pip-shipped server
            <version>/  model.onnx  model.py  export.json
        <model>_onnx/   config.pbtxt (platform "onnxruntime_onnx")  <- official containers, CPU or GPU
            <version>/  model.onnx  export.json

Each export adds version max+1 to both; earlier versions stay. A version directory appears whole (written
into a hidden staging directory, then renamed) or not at all; Triton ignores non-numeric directories.

    >>> published = add_version(Path("triton/model_repository"), "mnist_etc", Path("model.onnx"), record)
    >>> published.version, published.model_dirs
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_etc.atomic import staged_dir, write_json_atomic, write_text_atomic
from mnist_etc.errors import UserError
from mnist_etc.names import validate_name
from mnist_etc.triton.model_config import (BACKENDS, ONNXRUNTIME, PYTHON, TritonModelConfig, parse_pbtxt,
                                           to_pbtxt)

DEFAULT_REPOSITORY = Path("triton/model_repository")
DEFAULT_MODEL_NAME = "mnist_etc"
ONNX_SUFFIX = "_onnx"
PYTHON_MODEL_SOURCE = Path(__file__).with_name("python_model.py")
def validate_model_name(name: Any) -> str:
    return validate_name(name, "model")


def validate_version(version: Any) -> int:
    if isinstance(version, str) and version.isdigit():
        version = int(version)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise UserError(f"model version must be an integer >= 1, got {version!r}.")
    return version


def served_name(model: str, backend: str) -> str:
    """The Triton model name of `model` under `backend` (both variants live in one repository)."""
    validate_model_name(model)
    if backend not in BACKENDS:
        raise UserError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}.")
    return model if backend == PYTHON else model + ONNX_SUFFIX


def versions(repository: Path, served: str) -> list[int]:
    """Published versions of a served model, ascending (staging directories are not versions)."""
    model_dir = Path(repository) / validate_model_name(served)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def list_models(repository: Path) -> dict[str, str]:
    """Served model name -> backend, for every model directory with a readable config.pbtxt."""
    if not Path(repository).is_dir():
        raise UserError(f"model repository {str(repository)!r} does not exist; run 'mnist-etc export' first or "
                        f"pass --repository DIR.")
    out = {}
    for cfg_path in sorted(Path(repository).glob("*/config.pbtxt")):
        mc = parse_pbtxt(cfg_path.read_text())
        out[cfg_path.parent.name] = PYTHON if mc.backend == PYTHON else ONNXRUNTIME
    return out


def write_config(repository: Path, model: str, backend: str, cfg: TritonModelConfig) -> Path:
    """(Re)generate `<served>/config.pbtxt`; it applies to every version of that served model."""
    name = served_name(model, backend)
    path = Path(repository) / name / "config.pbtxt"
    write_text_atomic(path, to_pbtxt(name, backend, cfg))
    return path


def read_config(repository: Path, served: str) -> TritonModelConfig:
    path = Path(repository) / validate_model_name(served) / "config.pbtxt"
    if not path.is_file():
        raise UserError(f"no model {served!r} in repository {str(repository)!r} ({path} not found).")
    return TritonModelConfig.from_proto(parse_pbtxt(path.read_text()))


@dataclass(frozen=True)
class PublishedVersion:
    model: str
    version: int
    model_dirs: dict[str, Path]   # backend -> <repository>/<served name>
    repository: Path

    def version_dir(self, backend: str = PYTHON) -> Path:
        return self.model_dirs[backend] / str(self.version)


def add_version(repository: Path, model: str, onnx_file: Path, record: dict[str, Any],
                cfg: TritonModelConfig | None = None, backends: tuple[str, ...] = BACKENDS) -> PublishedVersion:
    """Publish `onnx_file` as the next version of `model` under each backend, with `record` as export.json.

    The version number is one above the highest of any variant, so both variants of an export share it.
    Two exports racing for the same number: the loser's rename fails and it takes the next number.
    """
    repository = Path(repository)
    cfg = cfg or TritonModelConfig()
    names = {b: served_name(model, b) for b in backends}
    if not Path(onnx_file).is_file():
        raise UserError(f"ONNX file {str(onnx_file)!r} does not exist.")
    for _ in range(20):
        version = max([v for n in names.values() for v in versions(repository, n)], default=0) + 1
        try:
            for backend, name in names.items():
                _publish_version_dir(repository / name / str(version), backend, onnx_file,
                                     {**record, "triton": {"model": name, "backend": backend, "version": version,
                                                           "config": cfg.to_dict()}})
            break
        except FileExistsError:
            continue
    else:
        raise RuntimeError(f"could not claim a free version number for {model!r} in {repository}")
    # The config goes in after the versions, so Triton never sees a model directory without a version.
    for backend in backends:
        write_config(repository, model, backend, cfg)
    return PublishedVersion(model, version, {b: repository / n for b, n in names.items()}, repository)


def _publish_version_dir(final: Path, backend: str, onnx_file: Path, record: dict[str, Any]) -> None:
    with staged_dir(final, replace=False) as tmp:
        shutil.copyfile(onnx_file, tmp / "model.onnx")
        if backend == PYTHON:
            shutil.copyfile(PYTHON_MODEL_SOURCE, tmp / "model.py")
        write_json_atomic(tmp / "export.json", record)


def export_record(repository: Path, served: str, version: int | None = None) -> tuple[int, dict[str, Any]]:
    """(version, export.json) of a served model: the given version, or the newest."""
    available = versions(repository, served)
    if not available:
        raise UserError(f"model {served!r} has no versions in {str(repository)!r}; run 'mnist-etc export' first.")
    version = available[-1] if version is None else validate_version(version)
    path = Path(repository) / served / str(version) / "export.json"
    if not path.is_file():
        raise UserError(f"model {served!r} has no version {version} in {str(repository)!r}; "
                        f"available: {', '.join(map(str, available))}.")
    return version, json.loads(path.read_text())
