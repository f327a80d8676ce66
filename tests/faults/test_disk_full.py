"""Fault: the disk fills up while a model, a sweep trial or a benchmark run is being published.

The disk is real: a tmpfs of a few MB mounted where the artifact goes (this needs root; the tests skip
without it) and filled with a ballast file until a few KB are left, so writes fail with ENOSPC. A file-size
limit is the other real fault: RLIMIT_FSIZE set in the `mnist-etc` child (SIGXFSZ ignored, so a write past the
limit fails with EFBIG instead of killing the process).

Every run must fail with one sentence naming the path, exit non-zero without a traceback, leave the previous
artifacts byte for byte as they were, and leave no directory half-written, visible or hidden (`.partial-`
staging, `.old-` swap). Every command is a `mnist-etc` process in a session of its own, killed by its
process group if it outlives its timeout; every tmpfs is unmounted at teardown.
"""
from __future__ import annotations

import hashlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
BALLAST = "ballast"
# The attack's public autoencoders, cached where the in-process tests keep them (fitting them costs ~20 s).
CACHE = os.environ.get("MNIST_ETC_CACHE", str(REPO / "artifacts" / "cache"))


# --------------------------------------------------------------------------------------------- the fault

@pytest.fixture()
def small_disk():
    """`small_disk(path, size)` mounts a tmpfs of `size` at `path`; all are unmounted at teardown."""
    mounted: list[Path] = []

    def mount(path: Path, size: str = "4m") -> Path:
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                              capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        if subprocess.run(["umount", str(path)], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def fill(mount: Path, leave: int) -> None:
    """Write a ballast file until only `leave` bytes are free on the filesystem of `mount`."""
    st = os.statvfs(mount)
    with open(mount / BALLAST, "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))


def file_size_limit(limit: int):
    """preexec_fn of a child whose writes past `limit` bytes fail with EFBIG (the signal would kill it)."""
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def start_cli(args: list[str], cwd: Path, preexec_fn=None) -> tuple[subprocess.Popen, Path, Path]:
    out, err = cwd / "cli.out", cwd / "cli.err"
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen([str(BIN / "mnist-etc"), *args], cwd=cwd, stdout=o, stderr=e,
                                stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=preexec_fn,
                                env=dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3",
                                         MNIST_ETC_CACHE=CACHE))
    return proc, out, err


def finish(proc: subprocess.Popen, timeout: float) -> int:
    """Wait for `proc`; past `timeout`, kill its whole session (it may have started tritonserver)."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"mnist-etc did not end within {timeout:.0f} s")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def run_cli(args: list[str], cwd: Path, timeout: float, preexec_fn=None) -> tuple[int, str, str]:
    proc, out, err = start_cli(args, cwd, preexec_fn)
    code = finish(proc, timeout)
    return code, out.read_text(), err.read_text()


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` (the ballast aside) -> sha256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != BALLAST and "__pycache__" not in p.parts}


def hidden_leftovers(root: Path) -> list[str]:
    """Staging directories, swapped-out directories and temporary files of an atomic write."""
    return [str(p) for p in root.rglob(".*") if p.name != ".sweep.lock"]


def assert_one_sentence(code: int, out: str, err: str, verb: str, path: Path, why: str = "no space left on device"):
    assert code != 0, out[-2000:] + err[-2000:]
    assert "Traceback" not in out + err, err[-4000:]
    last = err.strip().splitlines()[-1]
    assert re.fullmatch(rf"mnist-etc {verb}: error: {why} while writing {re.escape(str(path))}\S*: [^\n]+\.", last), last


# --------------------------------------------------------------------------------------------- the cases

def test_export_into_a_full_model_repository(tmp_path, small_disk, tiny_model_dir):
    """Room left for one of the two served variants, not both: the export must not appear half-published."""
    from mnist_etc.triton.repository import add_version, versions
    from tests.onnx_models import tiny_onnx

    repo = small_disk(tmp_path / "repo", "2m")
    add_version(repo, "mnist_etc", tiny_onnx(tmp_path / "v1.onnx"), {"source": "the previous export"})
    before = snapshot(repo)
    # The tiny model's ONNX is ~124 KB: the Python variant (ONNX, model.py, export.json) fits, its twin does not.
    fill(repo, 160 * 1024)
    code, out, err = run_cli(["export", "--model", str(tiny_model_dir), "--repository", str(repo), "--no-mlflow-log"],
                             tmp_path, timeout=300)
    assert_one_sentence(code, out, err, "export", repo)
    assert not hidden_leftovers(repo)
    assert versions(repo, "mnist_etc_onnx") == [1]   # the variant that did not fit
    assert versions(repo, "mnist_etc") == [1]   # its twin, published first, is withdrawn with it
    assert snapshot(repo) == before


def test_model_over_a_file_size_limit(tmp_path, tiny_model_dir):
    """`mnist-etc train` over a previous model of the same name, under RLIMIT_FSIZE (EFBIG, not ENOSPC)."""
    models = tmp_path / "models"
    shutil.copytree(tiny_model_dir, models / "m")
    before = snapshot(models)
    code, out, err = run_cli(["train", "--out", str(models / "m"), "--hid-dim", "4", "--ae-epochs", "1",
                              "--clf-epochs", "1", "--train-size", "300", "--quiet"], tmp_path, timeout=300,
                             preexec_fn=file_size_limit(32 * 1024))   # the weight files are larger
    assert_one_sentence(code, out, err, "train", models / "m", why="file size limit exceeded")
    assert snapshot(models) == before
    assert not hidden_leftovers(models)


def test_sweep_trial_on_a_disk_that_fills_up(tmp_path, small_disk):
    """A two-trial sweep; the disk fills up once the first trial is published, while the second one runs."""
    from tests.test_sweep import study_of, write_space

    root = tmp_path / "artifacts"
    study_dir = small_disk(root / "sweeps" / "diskfull", "4m")
    space = write_space(tmp_path, "diskfull", trials=2)
    proc, out, err = start_cli(["sweep", "--space", str(space), "--no-prefect", "--artifacts", str(root)], tmp_path)
    try:
        deadline = time.time() + 300
        while not (study_dir / "trial-0").is_dir():
            assert proc.poll() is None, err.read_text()[-3000:]
            assert time.time() < deadline, "no trial published within 300 s"
            time.sleep(0.1)
        first = snapshot(study_dir / "trial-0")   # renamed into place whole: complete when visible
        fill(study_dir, 8 * 1024)
    finally:
        code = finish(proc, timeout=300)
    out, err = out.read_text(), err.read_text()
    assert_one_sentence(code, out, err, "sweep", study_dir / "trial-1")
    assert snapshot(study_dir / "trial-0") == first
    assert sorted(p.name for p in study_dir.iterdir()) == [".sweep.lock", BALLAST, "search_space.json", "trial-0"]
    trials = study_of("diskfull", root).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "WAITING"], [t.state.name for t in trials]
    assert trials[1].user_attrs.get("stale") and trials[2].user_attrs.get("retry_of") == 1
    assert "trial #1: left unfinished" in out + err


def test_benchmark_run_on_a_full_disk(tmp_path, small_disk):
    """Room for the measurement's raw files, not for the run's plots: the previous run of that name stays."""
    from mnist_etc.triton.repository import add_version
    from tests.onnx_models import tiny_onnx

    repo = tmp_path / "repo"
    add_version(repo, "bench", tiny_onnx(tmp_path / "tiny.onnx"), {"source": "test"}, backends=("python",))
    benchmarks = small_disk(tmp_path / "artifacts" / "benchmarks", "1m")
    previous = benchmarks / "nightly"
    previous.mkdir()
    (previous / "results.csv").write_text("config,concurrency,throughput\n0,2,1234.5\n")
    (previous / "summary.md").write_text("# the previous run of this name\n")
    before, repo_before = snapshot(benchmarks), snapshot(repo)
    fill(benchmarks, 16 * 1024)
    code, out, err = run_cli(["benchmark", "--model", "bench", "--repository", str(repo), "--run", "nightly",
                              "--concurrency", "2", "--measurement-interval-ms", "500", "--stability-percentage",
                              "100", "--max-trials", "8", "--request-batch-size", "2", "--ceiling-seconds", "0.5",
                              "--no-prefect", "--no-mlflow", "--artifacts", str(tmp_path / "artifacts")],
                             tmp_path, timeout=240)
    assert_one_sentence(code, out, err, "benchmark", previous)
    assert snapshot(benchmarks) == before and snapshot(repo) == repo_before   # no candidate config either
    assert not hidden_leftovers(benchmarks)
    left = [pid for pid in os.listdir("/proc") if pid.isdigit() and str(repo).encode() in _cmdline(pid)]
    assert not left, f"processes left serving {repo}: {left}"


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
