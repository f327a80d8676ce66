"""One live sweep per study, wherever the sweeps run.

A second live sweep of a study would fail the first one's RUNNING trials as stale and tell trials twice, so
`study_lock` refuses it with one sentence:

- SQLite storage (one machine: the file cannot be shared safely): an exclusive fcntl lock on
  `<study_dir>/.sweep.lock`. Taken for PostgreSQL studies too: it guards the local study folder.
- PostgreSQL storage (sweeps of one study may start on several machines): a session-level advisory lock on
  the study's database, keyed on the study name, held on one dedicated connection for the sweep's life. The
  server releases it when that connection ends, so a sweep killed with SIGKILL, or a machine that vanished,
  does not leave the study locked. The holder names itself in `application_name` ("mnist-etc sweep <study>
  pid <pid> on <host>"), which the refusal quotes.
"""
from __future__ import annotations

import fcntl
import os
import socket
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from mnist_etc.errors import UserError

# The advisory lock's first key: "a sweep of a study" (the second key is the study name's CRC-32). Distinct
# from storage.SCHEMA_LOCK_KEY, which uses the one-key form.
SWEEP_LOCK_NAMESPACE = zlib.crc32(b"mnist-etc sweep of a study")
# Session settings of the lock connection. The server keeps its own watch on the holder's TCP connection:
# a holder whose machine vanished without closing it (power loss, partition) loses the lock after about
# idle + interval x count = 60 s instead of the kernel's default of over two hours. Ignored on Unix sockets.
SERVER_KEEPALIVE = "-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3"


def _int4(value: int) -> int:
    """A CRC-32 (unsigned) as the signed 32-bit integer pg_advisory_lock(int4, int4) takes."""
    return value - (1 << 32) if value >= 1 << 31 else value


def sweep_lock_keys(study: str) -> tuple[int, int]:
    return _int4(SWEEP_LOCK_NAMESPACE), _int4(zlib.crc32(study.encode()))


@contextmanager
def study_lock(study_dir: Path, storage_url: str | None = None, study: str | None = None) -> Iterator[None]:
    """Hold the study's sweep lock for the `with` block; UserError if another live sweep holds it."""
    from mnist_etc.sweep.storage import sqlite_path

    if storage_url is not None and sqlite_path(storage_url) is None:
        # Both: the advisory lock keeps other machines out; the file lock keeps a same-named study of another
        # database out of this machine's `<artifacts>/sweeps/<study>/`.
        with _file_lock(Path(study_dir)), _postgres_lock(storage_url, study or Path(study_dir).name):
            yield
        return
    with _file_lock(Path(study_dir)):
        yield


@contextmanager
def _file_lock(study_dir: Path) -> Iterator[None]:
    study_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(study_dir / ".sweep.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"study {study_dir.name!r} is being swept by another process right now (lock "
                            f"{study_dir / '.sweep.lock'}); wait for it to finish or pass another --study.") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock


def holder_name(study: str) -> str:
    return f"mnist-etc sweep {study} pid {os.getpid()} on {socket.gethostname()}"[:63]  # NAMEDATALEN - 1


@contextmanager
def _postgres_lock(storage_url: str, study: str) -> Iterator[None]:
    import sqlalchemy
    import sqlalchemy.exc

    from mnist_etc.sweep.storage import engine_url, failure_reason, redact

    ns, key = sweep_lock_keys(study)
    # The connection idles for the whole sweep. Client keepalives: a silently dropped one would drop the lock.
    # Server keepalives (SERVER_KEEPALIVE): the server itself notices a holder's machine that vanished.
    engine = sqlalchemy.create_engine(engine_url(storage_url), poolclass=sqlalchemy.pool.NullPool,
                                      connect_args={"connect_timeout": 10, "application_name": holder_name(study),
                                                    "keepalives": 1, "keepalives_idle": 30,
                                                    "options": SERVER_KEEPALIVE})
    try:
        try:
            con = engine.connect()
        except sqlalchemy.exc.DBAPIError as exc:
            raise UserError(f"could not open study storage {redact(storage_url)!r} to lock study {study!r} "
                            f"({failure_reason(exc)}).") from None
        with con:
            con.execution_options(isolation_level="AUTOCOMMIT")
            got = con.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:ns, :key)"), {"ns": ns, "key": key}).scalar()
            if not got:
                raise UserError(f"study {study!r} is being swept right now by {_holder(con, ns, key)} (PostgreSQL "
                                f"advisory lock in {redact(storage_url)}); wait for it to finish or pass another "
                                f"--study.")
            try:
                yield
            finally:
                try:
                    con.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:ns, :key)"), {"ns": ns, "key": key})
                except sqlalchemy.exc.DBAPIError:
                    pass   # the connection is gone, and the lock with it
    finally:
        engine.dispose()


def _holder(con: object, ns: int, key: int) -> str:
    """Who holds the lock, from pg_locks (whose classid/objid show the int4 keys as unsigned oids)."""
    import sqlalchemy

    row = con.execute(sqlalchemy.text(
        "SELECT a.application_name, a.client_addr, a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :ns AND l.objid = :key AND l.objsubid = 2 "
        # advisory locks are per database: the same study name in another database is another study
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
        {"ns": ns % (1 << 32), "key": key % (1 << 32)}).first()
    if row is None:
        return "another sweep (it has just finished? try again)"
    name, addr, pid = row
    return f"'{name}'" if name else f"PostgreSQL backend pid {pid} from {addr or 'a local socket'}"
