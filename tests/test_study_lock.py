"""One live sweep per study: an fcntl lock beside a SQLite study, a PostgreSQL advisory lock (which holds
across machines) for a study on PostgreSQL. Real PostgreSQL at 127.0.0.1:5432, real processes."""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mnist_etc.errors import UserError
from mnist_etc.sweep.locks import study_lock

ROOT = Path(__file__).resolve().parents[1]


def test_a_second_sweep_of_a_postgresql_study_is_refused_naming_the_holder(postgres_url, tmp_path):
    with study_lock(tmp_path / "a", postgres_url, "pgstudy"):
        # Another machine would have another study_dir: the lock is on the database, not the folder.
        with pytest.raises(UserError) as refused:
            with study_lock(tmp_path / "b", postgres_url, "pgstudy"):
                pass
        with study_lock(tmp_path / "c", postgres_url, "another-study"):   # other studies are not blocked
            pass
    said = str(refused.value)
    assert "study 'pgstudy' is being swept right now by 'mnist-etc sweep pgstudy pid " in said, said
    assert f"pid {os.getpid()} on " in said and "\n" not in said
    with study_lock(tmp_path / "b", postgres_url, "pgstudy"):   # released on exit
        pass
    # Beside the advisory lock, the local study folder is locked too (a same-named study of another database).
    with study_lock(tmp_path / "d", postgres_url, "pgstudy"):
        with pytest.raises(UserError, match=r"being swept by another process right now \(lock "):
            with study_lock(tmp_path / "d", postgres_url.rsplit("/", 1)[0] + "/postgres", "pgstudy"):
                pass


def test_a_killed_holder_releases_the_postgresql_lock(postgres_url, tmp_path):
    """kill -9 of a sweep (or a vanished machine): the server ends its session and the lock with it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\nfrom mnist_etc.sweep.locks import study_lock\n"
         "with study_lock(Path(sys.argv[1]), sys.argv[2], 'killed'):\n    print('locked', flush=True)\n    time.sleep(600)\n",
         str(tmp_path), postgres_url], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        elsewhere = tmp_path / "another-machine"   # its own study folder: only the advisory lock is shared
        with pytest.raises(UserError, match=f"pid {holder.pid} on "):
            with study_lock(elsewhere, postgres_url, "killed"):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        deadline = time.monotonic() + 30
        while True:
            try:
                with study_lock(elsewhere, postgres_url, "killed"):
                    break
            except UserError:
                assert time.monotonic() < deadline, "the lock outlived its killed holder by 30 s"
                time.sleep(0.2)
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=30)


def test_of_racing_sweeps_exactly_one_gets_the_postgresql_lock(postgres_url, tmp_path):
    start, outcomes = threading.Barrier(6), []

    def race(i: int) -> None:
        start.wait()
        try:
            with study_lock(tmp_path / str(i), postgres_url, "raced"):
                outcomes.append("won")
                time.sleep(2)   # held while the others try
        except UserError:
            outcomes.append("refused")

    threads = [threading.Thread(target=race, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["refused"] * 5 + ["won"], outcomes


def test_a_sqlite_study_keeps_its_file_lock(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    with study_lock(tmp_path / "s", url, "s"):
        assert (tmp_path / "s" / ".sweep.lock").read_text().strip() == str(os.getpid())
        with pytest.raises(UserError, match=r"study 's' is being swept by another process right now"):
            with study_lock(tmp_path / "s", url, "s"):
                pass


def test_an_unreachable_postgresql_is_one_sentence(tmp_path):
    with pytest.raises(UserError) as refused:
        with study_lock(tmp_path, "postgresql://nobody:secret@127.0.0.1:1/x", "s"):
            pass
    said = str(refused.value)
    assert "could not open study storage" in said and "to lock study 's'" in said
    assert "secret" not in said and "\n" not in said


def test_the_holder_named_is_the_one_in_the_studys_own_database(postgres_url, tmp_path):
    """Advisory locks are per database: a study of the same name in another database is another study, and
    its sweep is neither blocking this one nor named as this one's holder."""
    import psycopg2

    from mnist_etc.sweep.locks import sweep_lock_keys

    other_db = postgres_url.rsplit("/", 1)[1] + "_other"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=5)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{other_db}"')
    elsewhere = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=other_db,
                                 application_name="a sweep of the other database", connect_timeout=5)
    try:
        with elsewhere.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s, %s)", sweep_lock_keys("same"))
            assert cur.fetchone()[0]
        with study_lock(tmp_path / "a", postgres_url, "same"):   # not blocked by the other database's holder
            with pytest.raises(UserError) as refused:
                with study_lock(tmp_path / "b", postgres_url, "same"):
                    pass
        assert f"pid {os.getpid()} on " in str(refused.value), refused.value
        assert "other database" not in str(refused.value), refused.value
    finally:
        elsewhere.close()
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{other_db}" WITH (FORCE)')
        admin.close()
