"""Fault: many processes open one fresh study storage at the same moment (a sweep and its dashboard started
together). Every opener must succeed, on SQLite and on PostgreSQL; before the opening lock, Optuna's schema
creation raced ("table studies already exists", "UNIQUE constraint failed: alembic_version")."""
import subprocess
import sys
import time
import uuid

import pytest

OPENERS = 8
# Each child imports first, then waits for a common start time, so the openings really overlap.
CHILD = ("import sys, time\n"
         "from mnist_etc.sweep.storage import open_storage\n"
         "import optuna, sqlalchemy\n"
         "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
         "storage = open_storage(sys.argv[1])\n"
         "print('opened', len(storage.get_all_studies()))\n")


def _open_concurrently(url: str) -> list[tuple[int, str, str]]:
    start = time.time() + 5
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, url, str(start)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(OPENERS)]
    try:
        return [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def _assert_all_opened(results):
    failures = [err.strip().splitlines()[-1] if err.strip() else f"exit {rc}" for rc, out, err in results
                if rc != 0 or "opened 0" not in out]
    assert not failures, failures


@pytest.mark.slow
def test_eight_openers_of_a_fresh_sqlite_storage(tmp_path):
    _assert_all_opened(_open_concurrently(f"sqlite:///{tmp_path / 'optuna.db'}"))


@pytest.mark.slow
def test_eight_openers_of_a_fresh_postgresql_database():
    sqlalchemy = pytest.importorskip("sqlalchemy")
    name = f"mnist_etc_race_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine("postgresql+psycopg2://postgres@127.0.0.1:5432/postgres",
                                     isolation_level="AUTOCOMMIT")
    with admin.connect() as con:
        con.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        _assert_all_opened(_open_concurrently(f"postgresql://postgres@127.0.0.1:5432/{name}"))
    finally:
        with admin.connect() as con:
            con.execute(sqlalchemy.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
