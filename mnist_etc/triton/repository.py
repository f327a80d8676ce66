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
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnist_etc.atomic import staged_dir, write_json_atomic, write_text_atomic
from mnist_etc.errors import UserError
from mnist_etc.names import validate_name
from mnist_etc.triton.model_config import (BACKENDS, ONNXRUNTIME, PYTHON, PbtxtError, TritonModelConfig,
                                           parse_pbtxt, served_config_problem, to_pbtxt)

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2 as pb

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


def model_names(repository: Path) -> list[str]:
    """Every model directory of the repository that has a config.pbtxt (not read: see `read_model_config`)."""
    if not Path(repository).is_dir():
        raise UserError(f"model repository {str(repository)!r} does not exist; run 'mnist-etc export' first or "
                        f"pass --repository DIR.")
    return sorted(p.parent.name for p in Path(repository).glob("*/config.pbtxt"))


def list_models(repository: Path) -> dict[str, str]:
    """Served model name -> backend, for every model directory with a config.pbtxt; a corrupt one is an error
    naming it (it must not silently drop out of what a server loads)."""
    out = {}
    for name in model_names(repository):
        mc = read_model_config(repository, name)
        out[name] = PYTHON if mc.backend == PYTHON else ONNXRUNTIME
    return out


def read_model_config(repository: Path, served: str) -> pb.ModelConfig:
    """`<served>/config.pbtxt` as the ModelConfig protobuf Triton reads, checked to serve the classifier; a
    corrupt file is one sentence naming the file and the model."""
    path = Path(repository) / validate_model_name(served) / "config.pbtxt"
    if not path.is_file():
        raise UserError(f"no model {served!r} in repository {str(repository)!r} ({path} not found).")
    try:
        mc = parse_pbtxt(path.read_text(encoding="utf-8"))
        problem = served_config_problem(mc, served)
    except UnicodeDecodeError as exc:
        problem = f"is not text (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
    except PbtxtError as exc:
        problem = f"does not parse as a Triton ModelConfig ({exc.detail})"
    if problem:
        raise UserError(f"the config of model {served!r} is corrupt: {path} {problem}; re-export the model "
                        f"('mnist-etc export') to write a sound one.")
    return mc


def write_config(repository: Path, model: str, backend: str, cfg: TritonModelConfig) -> Path:
    """(Re)generate `<served>/config.pbtxt`; it applies to every version of that served model."""
    name = served_name(model, backend)
    path = Path(repository) / name / "config.pbtxt"
    write_text_atomic(path, to_pbtxt(name, backend, cfg))
    return path


def read_config(repository: Path, served: str) -> TritonModelConfig:
    return TritonModelConfig.from_proto(read_model_config(repository, served))


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
    published: list[Path] = []   # this export's version directories: withdrawn together if any step fails
    try:
        for _ in range(20):
            version = max([v for n in names.values() for v in versions(repository, n)], default=0) + 1
            try:
                for backend, name in names.items():
                    _publish_version_dir(repository / name / str(version), backend, onnx_file,
                                         {**record, "triton": {"model": name, "backend": backend, "version": version,
                                                               "config": cfg.to_dict()}})
                    published.append(repository / name / str(version))
                break
            except FileExistsError:
                _withdraw(published)
                continue
        else:
            raise RuntimeError(f"could not claim a free version number for {model!r} in {repository}")
        # The config goes in after the versions, so Triton never sees a model directory without a version.
        for backend in backends:
            write_config(repository, model, backend, cfg)
    except BaseException:
        # One variant without its twin (a full disk after the first copy) must not stay published.
        _withdraw(published)
        raise
    return PublishedVersion(model, version, {b: repository / n for b, n in names.items()}, repository)


def _withdraw(version_dirs: list[Path]) -> None:
    """Remove version directories this export published (renamed aside first, so a polling server never reads
    half a directory), and a model directory left with neither versions nor a config."""
    for final in version_dirs:
        aside = final.parent / f".{final.name}.withdrawn"
        try:
            os.replace(final, aside)
        except FileNotFoundError:
            continue
        shutil.rmtree(aside, ignore_errors=True)
        model_dir = final.parent
        if not (model_dir / "config.pbtxt").exists() and not any(p.name.isdigit() for p in model_dir.iterdir()):
            shutil.rmtree(model_dir, ignore_errors=True)
    version_dirs.clear()


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
