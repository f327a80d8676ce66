"""Where Optuna studies live: a SQLite file under artifacts/ by default, or PostgreSQL.

Design (why the optuna-dashboard cannot break a running sweep):
- One writer: only the sweep's orchestrator writes to the study storage. Trials, wherever they run
  (threads, processes, later remote workers), return their results and the orchestrator tells them.
- SQLite runs in WAL mode: readers (the dashboard) never block the writer and the writer never blocks
  readers. In SQLite's default rollback-journal mode a reader's shared lock makes the writer's commit fail
  with "database is locked" after the driver's 5 s timeout, which is how a dashboard crashed studies
  (optuna/optuna-dashboard#545). WAL is a property of the database file, so every later connection,
  the dashboard's included, uses it too.
- A 60 s busy timeout covers the rare second writer (a dashboard note, two sweeps of different studies
  sharing the file): it waits instead of failing.
- PostgreSQL (several writers, other machines) needs none of this; connections are pinged before use
  because trials can outlast a server's idle timeout.
- Opening is safe under any number of concurrent openers (a sweep and its dashboard started together):
  Optuna creates the schema on first open with CREATE TABLE and an alembic stamp, which race ("table studies
  already exists", "UNIQUE constraint failed: alembic_version"). `open_storage` holds a lock while it opens:
  an exclusive fcntl lock on a file beside a SQLite database, a PostgreSQL advisory lock (per database) on a
  server; the first opener creates the schema, the others find it.
"""
from __future__ import annotations

import fcntl
import os
import sqlite3
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from mnist_etc.errors import UserError

SQLITE_BUSY_TIMEOUT_S = 60
SUPPORTED = "sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE"
# The advisory lock key of "creating or checking the Optuna schema" (any fixed 32-bit number would do).
SCHEMA_LOCK_KEY = zlib.crc32(b"mnist-etc optuna schema")


def default_storage_url(artifacts: Path) -> str:
    return f"sqlite:///{(Path(artifacts) / 'sweeps' / 'optuna.db').resolve()}"


def _parse(url: str) -> Any:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if not isinstance(url, str) or not url:
        raise UserError(f"storage URL {url!r} is empty; use {SUPPORTED}.")
    try:
        return make_url(url)
    except ArgumentError:
        raise UserError(f"storage URL {url!r} is not a database URL; use {SUPPORTED}.") from None


def redact(url: str) -> str:
    """The URL with any password masked, for logs, reports and MLflow tags."""
    try:
        return _parse(url).render_as_string(hide_password=True)
    except UserError:
        return url


def sqlite_path(url: str) -> Path | None:
    parsed = _parse(url)
    return Path(parsed.database) if parsed.get_backend_name() == "sqlite" and parsed.database else None


def validate_storage_url(url: str) -> str:
    parsed = _parse(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise UserError(f"storage URL {url!r} names no file; a sweep must persist to resume, use "
                            f"sqlite:///PATH.")
    elif backend != "postgresql":
        raise UserError(f"storage URL {redact(url)!r} uses {backend!r}, which is not supported; use {SUPPORTED}.")
    return url


def engine_url(url: str) -> str:
    """`postgresql://` means SQLAlchemy's default driver, psycopg 3 in SQLAlchemy 2.1; the environment
    ships psycopg2 (psycopg2-binary), so a URL without a driver gets that one."""
    parsed = _parse(url)
    if parsed.drivername == "postgresql":
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    return url


def failure_reason(exc: BaseException) -> str:
    """The first line of the driver's message of a SQLAlchemy error (its own text adds the SQL and a link)."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _enable_wal(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S)
    try:
        mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{str(path)!r} is not a usable SQLite database ({exc}).") from None
    finally:
        con.close()
    if mode.lower() != "wal":
        raise UserError(f"SQLite file {str(path)!r} could not be switched to WAL mode (got {mode!r}); put it on "
                        f"a local disk or use PostgreSQL.")


@contextmanager
def _opening_lock(url: str, path: Path | None, engine_kwargs: dict[str, Any]) -> Iterator[None]:
    """Serialise opening (schema creation) among processes on this storage; see the module docstring."""
    if path is not None:
        fd = os.open(path.with_name(path.name + ".open.lock"), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)   # closing releases the lock
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(engine_url(url), poolclass=sqlalchemy.pool.NullPool,
                                      connect_args=engine_kwargs["connect_args"])
    try:
        with engine.connect() as con:
            con.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": SCHEMA_LOCK_KEY})
            try:
                yield
            finally:
                con.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": SCHEMA_LOCK_KEY})
    finally:
        engine.dispose()


def open_storage(url: str) -> Any:
    """An Optuna RDBStorage for `url`, with the settings above; UserError if it cannot be opened."""
    import optuna
    import sqlalchemy.exc

    validate_storage_url(url)
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    else:
        engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    try:
        with _opening_lock(url, path, engine_kwargs):
            if path is not None:   # switching to WAL races too ("database is locked"): inside the lock
                _enable_wal(path)
            return optuna.storages.RDBStorage(engine_url(url), engine_kwargs=engine_kwargs)
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.DatabaseError) as exc:
        raise UserError(f"could not open study storage {redact(url)!r} ({failure_reason(exc)}).") from None
    except ImportError as exc:
        raise UserError(f"no database driver for {redact(url)!r} ({exc}); PostgreSQL needs psycopg2-binary.") from None
