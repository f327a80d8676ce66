"""A trained model named by an MLflow reference (`models:/NAME@ALIAS`, `models:/NAME/VERSION`,
`runs:/RUN_ID/PATH`): resolved to its run and the artifact URI of its files, checked without downloading
anything, or downloaded. A champion registered by a sweep is an ONNX model whose version names the Keras model
it came from (layout.KERAS_SOURCE_TAG): that is what a reference to it resolves to.

    >>> ref = check_model_reference("models:/mnist-etc-smoke@champion", "sqlite:///artifacts/mlflow.db")
    >>> ref.run_id, ref.artifact_uri                        # nothing downloaded, no store created
    >>> fetched = download_model(resolve_model(uri, tracking_uri), tracking_uri, Path("downloads/run-x"))
"""
from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from mnist_etc.errors import UserError
from mnist_etc.tracking.layout import KERAS_SOURCE_TAG, tracking_uri_or_default
from mnist_etc.tracking.patience import patient_http
from mnist_etc.tracking.store import check_tracking_uri, redacted, sqlite_file

MODEL_REFERENCE_FORMS = "models:/<name>@<alias>, models:/<name>/<version> or runs:/<run id>/<path>"
LISTED = 20   # how many existing names a refusal lists


@dataclass(frozen=True)
class ModelReference:
    uri: str            # the reference as given
    run_id: str         # the run that holds the model's files
    artifact_uri: str   # where they are: runs:/<run id>/<path>, or the model version's source


def _require_form(uri: object) -> str:
    if not isinstance(uri, str) or not uri.startswith(("models:/", "runs:/")):
        raise UserError(f"MLflow model {uri!r} is not accepted; use {MODEL_REFERENCE_FORMS}.")
    return uri


def _client(tracking_uri: str | None) -> Any:
    from mlflow.tracking import MlflowClient

    # The registry must be told the same URI: otherwise MLflow looks in ./mlflow.db and creates it.
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _from_version(uri: str, version: Any) -> ModelReference:
    # A champion registered as an ONNX model names the Keras model it was exported from (a run artifact).
    keras = (version.tags or {}).get(KERAS_SOURCE_TAG)
    return ModelReference(uri, version.run_id, f"runs:/{version.run_id}/{keras}" if keras else version.source)


def _unresolved(uri: str, tracking_uri: str | None, exc: Exception) -> UserError:
    return UserError(f"MLflow could not resolve {uri!r} (tracking URI {tracking_uri or 'default'}): "
                     f"{str(exc).splitlines()[0][:200]}")


def resolve_model(uri: str, tracking_uri: str | None) -> ModelReference:
    """The run and artifact URI that `uri` names in the store at `tracking_uri`; what MLflow says when it cannot
    resolve it, as one sentence."""
    from mlflow.exceptions import MlflowException

    _require_form(uri)
    client = _client(tracking_uri)
    if uri.startswith("runs:/"):
        return ModelReference(uri, uri[len("runs:/"):].split("/", 1)[0], uri)
    ref = uri[len("models:/"):].strip("/")
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            version = client.get_model_version_by_alias(name, alias)
        else:
            name, _, number = ref.partition("/")
            version = client.get_model_version(name, number)
    except MlflowException as exc:
        raise _unresolved(uri, tracking_uri, exc) from None
    return _from_version(uri, version)


def download_model(ref: ModelReference, tracking_uri: str | None, dst: Path) -> Path:
    """Download the model's files into the directory `dst`; returns the path MLflow wrote them to."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=ref.artifact_uri, dst_path=str(dst),
                                                        tracking_uri=tracking_uri))
    except MlflowException as exc:
        raise _unresolved(ref.uri, tracking_uri, exc) from None


# ------------------------------------------------------------------------------------------------- checks

def _parse(uri: object) -> tuple[str, str, str]:
    """("alias", name, alias), ("version", name, version) or ("run", run id, path); one sentence otherwise."""
    uri = _require_form(uri)
    if uri.startswith("runs:/"):
        run_id, _, path = uri[len("runs:/"):].partition("/")
        if not run_id:
            raise UserError(f"MLflow model {uri!r} names no run; use {MODEL_REFERENCE_FORMS}.")
        return "run", run_id, path.strip("/")
    ref = uri[len("models:/"):].strip("/")
    if "@" in ref:
        name, _, alias = ref.partition("@")
        if name and alias:
            return "alias", name, alias
    else:
        name, _, number = ref.partition("/")
        if name and number.isdigit():
            return "version", name, number
        if name and number:
            raise UserError(f"MLflow model {uri!r} names version {number!r}, which is not a version number; "
                            f"use {MODEL_REFERENCE_FORMS}.")
    raise UserError(f"MLflow model {uri!r} names no registered model with an alias or a version; "
                    f"use {MODEL_REFERENCE_FORMS}.")


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:LISTED])
    return shown + (f" and {len(names) - LISTED} more" if len(names) > LISTED else "")


def _local_store(tracking_uri: str) -> Path | None:
    """The file or directory a local tracking store is kept in (SQLite file, file store), else None."""
    db = sqlite_file(tracking_uri)
    if db is not None:
        return db
    parts = urlsplit(tracking_uri)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    if not parts.scheme or (len(parts.scheme) == 1 and parts.scheme.isalpha()):   # a path
        return Path(tracking_uri)
    return None


def _not_found(exc: Exception) -> bool:
    return getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST"


def _require_run_artifact(client: Any, uri: str, where: str, run_id: str, path: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException as exc:
        if _not_found(exc):
            raise UserError(f"MLflow model {uri!r}: there is no run {run_id!r} in {where}.") from None
        raise
    if not path:
        return
    parent = posixpath.dirname(path)
    listed = sorted(a.path for a in client.list_artifacts(run_id, parent or None))
    if path not in listed:
        there = f"in {parent}/" if parent else "at its top level"
        raise UserError(f"MLflow model {uri!r}: run {run_id} in {where} has no artifact {path!r}; "
                        f"{there} it has {_listing(listed) or 'nothing'}.")


def check_model_reference(uri: object, tracking_uri: str | None = None) -> ModelReference:
    """What `uri` resolves to in the store at `tracking_uri` (default: $MLFLOW_TRACKING_URI, else the project's
    store), found without downloading anything and without creating a store that does not exist; else one
    sentence naming the reference, the store and what it does hold."""
    from mlflow.exceptions import MlflowException

    kind, name, detail = _parse(uri)
    tracking_uri = check_tracking_uri(tracking_uri_or_default(tracking_uri))
    where = redacted(tracking_uri)
    local = _local_store(tracking_uri)
    if local is not None and not local.exists():   # opening it would create an empty store
        raise UserError(f"MLflow model {uri!r}: there is no MLflow tracking store at {where} ({local} does not "
                        f"exist); give the tracking URI that holds the model.")
    if tracking_uri.startswith(("http://", "https://")):
        patient_http()
    try:
        client = _client(tracking_uri)
        if kind == "run":
            _require_run_artifact(client, uri, where, name, detail)
            return ModelReference(uri, name, uri)
        try:
            registered = client.get_registered_model(name)
        except MlflowException as exc:
            if not _not_found(exc):
                raise
            names = sorted(m.name for m in client.search_registered_models(max_results=1000))
            raise UserError(f"MLflow model {uri!r}: there is no registered model {name!r} in {where}; "
                            + (f"registered: {_listing(names)}." if names else "none is registered there.")) from None
        if kind == "alias":
            aliases = dict(registered.aliases or {})
            if detail not in aliases:
                held = ", ".join(f"{a} (version {v})" for a, v in sorted(aliases.items()))
                raise UserError(f"MLflow model {uri!r}: registered model {name!r} in {where} has no alias "
                                f"{detail!r}; " + (f"its aliases: {held}." if held else "it has none."))
            detail = str(aliases[detail])
        try:
            version = client.get_model_version(name, detail)
        except MlflowException as exc:
            if not _not_found(exc):
                raise
            numbers = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
            raise UserError(f"MLflow model {uri!r}: registered model {name!r} in {where} has no version {detail}; "
                            + (f"its versions: {_listing([str(n) for n in numbers])}." if numbers
                               else "it has none.")) from None
        ref = _from_version(uri, version)
        if ref.artifact_uri.startswith("runs:/"):
            run_id, _, path = ref.artifact_uri[len("runs:/"):].partition("/")
            _require_run_artifact(client, uri, where, run_id, path.strip("/"))
        return ref
    except UserError:
        raise
    except Exception as exc:  # the server did not answer, the store could not be read
        raise UserError(f"could not check MLflow model {uri!r} in {where} "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}).") from None


def fetch_run_file(run_id: str, name: str, tracking_uri: str | None, dst_dir: Path) -> Path | None:
    """The file `name` at the top of run `run_id`'s artifacts, downloaded into `dst_dir`; None when it has none
    (a champion of a sweep from before the privacy ledger)."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        if name not in {a.path for a in client.list_artifacts(run_id)}:
            return None
        Path(dst_dir).mkdir(parents=True, exist_ok=True)
        return Path(client.download_artifacts(run_id, name, str(dst_dir)))
    except MlflowException as exc:
        raise UserError(f"MLflow run {run_id} in {redacted(tracking_uri or 'the default store')}: "
                        f"{str(exc).splitlines()[0][:200]}") from None


def replace_run_file(run_id: str, path: Path, tracking_uri: str | None) -> None:
    """Put `path` at the top of run `run_id`'s artifacts (a file of the same name is replaced)."""
    _client(tracking_uri).log_artifact(run_id, str(path))
