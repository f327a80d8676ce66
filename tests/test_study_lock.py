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
    assert not (tmp_path / "a" / ".sweep.lock").exists()   # no local file lock for a PostgreSQL study


def test_a_killed_holder_releases_the_postgresql_lock(postgres_url, tmp_path):
    """kill -9 of a sweep (or a vanished machine): the server ends its session and the lock with it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\nfrom mnist_etc.sweep.locks import study_lock\n"
         "with study_lock(Path(sys.argv[1]), sys.argv[2], 'killed'):\n    print('locked', flush=True)\n    time.sleep(600)\n",
         str(tmp_path), postgres_url], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=f"pid {holder.pid} on "):
            with study_lock(tmp_path, postgres_url, "killed"):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        deadline = time.monotonic() + 30
        while True:
            try:
                with study_lock(tmp_path, postgres_url, "killed"):
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
