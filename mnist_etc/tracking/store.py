"""The tracking store: which URIs name one, the SQLite file behind a `sqlite:` URI, and an experiment in it.

    >>> check_tracking_uri("sqlite:///artifacts/mlflow.db")      # returned as is; anything else: one sentence
    >>> client, experiment_id = open_experiment(uri, SWEEP_EXPERIMENT, Path("artifacts"))
"""
from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mnist_etc.errors import UserError
from mnist_etc.tracking.layout import ARTIFACT_ROOT

# MLflow's SQL stores (mlflow.store.db.db_types.DATABASE_ENGINES), each with an optional `+driver`; stated here
# so that checking a URI does not import MLflow (tests/test_tracking.py compares the two).
DATABASE_ENGINES = ("postgresql", "mysql", "sqlite", "mssql")
# What MLflow reads as a Databricks workspace rather than a directory of that name (its get_store_builder).
WORKSPACE_NAMES = ("databricks", "databricks-uc", "uc")
ACCEPTED_TRACKING_URIS = ("sqlite:///PATH, a postgresql://, mysql:// or mssql:// database URL, http(s)://HOST:PORT "
                          "of a tracking server, file:///PATH or a directory path")


def redacted(uri: str) -> str:
    """The URI with any password masked, for messages."""
    try:
        parts = urlsplit(uri)
        password = parts.password
    except ValueError:
        return uri
    if not password:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{password}@", ":***@", 1)))


def sqlite_file(uri: str) -> Path | None:
    """The database file a `sqlite:` tracking URI names (relative paths are relative to the working directory,
    as for MLflow), or None for any other URI or an in-memory database."""
    if not uri.lower().startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(uri)
    except ArgumentError:
        return None
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def check_tracking_uri(uri: object) -> str:
    """`uri` if MLflow keeps runs at it (judged by its form, nothing is opened), else one sentence naming it and
    the accepted forms. The forms are those of MLflow's tracking store registry that name a store of one's own:
    its SQL databases, a tracking server, a local directory."""
    if not isinstance(uri, str) or not uri.strip():
        raise UserError(f"MLflow tracking URI {uri!r} is empty; use {ACCEPTED_TRACKING_URIS}.")
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise UserError(f"MLflow tracking URI {redacted(uri)!r} is not a URI ({exc}); "
                        f"use {ACCEPTED_TRACKING_URIS}.") from None
    scheme = parts.scheme.lower()
    engine, plus, driver = scheme.partition("+")
    if (scheme == "" and uri not in WORKSPACE_NAMES) or (len(scheme) == 1 and scheme.isalpha()):
        return uri   # a directory path (C:\... parses as scheme "c")
    if scheme == "file" and parts.path:
        return uri
    if scheme in ("http", "https") and parts.hostname:
        return uri
    if engine in DATABASE_ENGINES and "+" not in driver and (driver or not plus):
        if engine == "sqlite":
            if sqlite_file(uri) is None:
                raise UserError(f"MLflow tracking URI {uri!r} names no database file; use sqlite:///PATH.")
            return uri
        if uri[len(scheme):].startswith("://"):
            return uri
    raise UserError(f"MLflow tracking URI {redacted(uri)!r} is not accepted; use {ACCEPTED_TRACKING_URIS}.")


def open_experiment(tracking_uri: str, name: str, artifacts: Path | None) -> tuple[Any, str]:
    """An MlflowClient for the store and the id of experiment `name` in it: created when missing, restored when
    deleted. A new experiment in a SQLite store keeps its run files in `<artifacts>/mlflow-artifacts` (beside the
    database) instead of MLflow's default `./mlruns` of whatever directory created it; a server keeps its own.
    A store that cannot be used is the user's to fix: one sentence."""
    from mlflow import MlflowClient

    try:
        client = MlflowClient(tracking_uri)
        exp = client.get_experiment_by_name(name)
        if exp is None:
            location = None
            if tracking_uri.startswith("sqlite:") and artifacts is not None:
                location = (Path(artifacts) / ARTIFACT_ROOT).resolve().as_uri()
            return client, client.create_experiment(name, artifact_location=location)
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return client, exp.experiment_id
    except Exception as exc:  # MlflowException, connection refused, bad URI: the user's to fix
        raise UserError(f"could not use MLflow tracking URI {tracking_uri!r} "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}).") from None
