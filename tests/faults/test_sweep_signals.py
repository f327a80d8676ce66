"""Fault: SIGTERM (a service manager stopping the sweep) and SIGINT (Ctrl-C) while a trial trains.

The sweep must stop within seconds, say what it did with the running trial and leave nothing RUNNING (that
finished trials survive a stop is checked after SIGKILL in tests/test_sweep.py). SIGTERM used to kill the process on the spot: the trial stayed RUNNING until the next
start and the user was told nothing."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_sweep import write_space

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, said", [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                             (signal.SIGINT, 130, "interrupted; finished artifacts are kept")])
def test_a_signalled_sweep_settles_its_running_trial(tmp_path, sig, code, said):
    import optuna

    from mnist_etc.errors import UserError
    from mnist_etc.sweep.storage import default_storage_url, open_storage

    root = tmp_path / "artifacts"
    space = write_space(tmp_path, "signalled", trials=3)
    proc = subprocess.Popen([sys.executable, "-m", "mnist_etc_cli.main", "sweep", "--space", str(space),
                             "--no-prefect", "--artifacts", str(root)], cwd=tmp_path,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    study = None
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            time.sleep(0.2)
            assert proc.poll() is None, "the sweep ended before the signal"
            if study is None:
                try:
                    study = optuna.load_study(study_name="signalled", storage=open_storage(default_storage_url(root)))
                except (KeyError, UserError):
                    continue
            if "RUNNING" in [t.state.name for t in study.get_trials(deepcopy=False)]:
                break
        else:
            pytest.fail("no trial was running within 180 s")
        # Into the running trial's training: its staging folder gets config.json once TensorFlow is imported
        # (a first import in a fresh environment takes many seconds and is no place to test a stop).
        while time.time() < deadline and not list((root / "sweeps" / "signalled").glob(".trial-*.partial-*/config.json")):
            assert proc.poll() is None, "the sweep ended before the signal"
            time.sleep(0.2)
        finished = {t.number: t.datetime_complete for t in study.get_trials() if t.state.name == "COMPLETE"}
        time.sleep(1.5)
        t0 = time.time()
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
        stopped_after = time.time() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code and stopped_after < 30, (proc.returncode, stopped_after, out[-2000:])
    assert said in out and "left unfinished when the sweep was interrupted; failed it and queued a retry" in out
    trials = study.get_trials()
    assert not [t for t in trials if t.state.name == "RUNNING"]
    assert {t.number: t.datetime_complete for t in trials if t.state.name == "COMPLETE"} == finished  # none yet
    assert [t.state.name for t in trials].count("WAITING") == 1   # the retry of the stopped trial
    assert "Traceback" not in out


@pytest.mark.slow
def test_a_stop_whose_exception_was_swallowed_takes_effect_at_the_next_trial(tmp_path):
    """The signal handler's exception can land in code that catches it (a library import, a callback): the
    stop it asked for is remembered, and the sweep stops after the trial, keeping that trial's result."""
    from mnist_etc.stop_request import clear_stop, request_stop
    from mnist_etc.sweep import LocalRunner, SweepOptions, run_sweep
    from mnist_etc.sweep.space import load_search_space
    from tests.test_sweep import study_of

    class SwallowingRunner(LocalRunner):
        def run_one(self, spec):
            outcome = super().run_one(spec)
            request_stop("SIGTERM")      # as if the handler ran and its exception was swallowed mid-trial
            return outcome

    root = tmp_path / "artifacts"
    space = load_search_space(write_space(tmp_path, "swallowed", trials=3))
    try:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(space, SweepOptions.build(artifacts=root), SwallowingRunner(1), log=lambda s: None)
    finally:
        clear_stop()
    states = [t.state.name for t in study_of("swallowed", root).trials]
    assert states == ["COMPLETE"], states     # the finished trial was told, nothing else was started
