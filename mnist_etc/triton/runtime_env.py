"""Where the pip-shipped Triton binaries live and the environment they need to run from this venv.

The tritonserver binary comes inside the nvidia-pytriton wheel and perf_analyzer inside the tritonclient
wheel; neither finds its shared libraries (or the right libpython) on its own. See ../shared/stack.md.

    >>> env = perf_analyzer_env()          # for subprocess.run([perf_analyzer_binary(), ...], env=env)
    >>> prepare_backend_dir(Path("artifacts/triton/backends"))   # --backend-directory for tritonserver
"""
from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from mnist_etc.errors import UserError


def site_packages() -> Path:
    """The venv's site-packages (where pytriton, tritonclient and the nvidia libraries are installed)."""
    return Path(sysconfig.get_paths()["purelib"])


def _pytriton_dir() -> Path:
    path = site_packages() / "pytriton" / "tritonserver"
    if not path.is_dir():
        raise UserError(f"the embedded Triton server is missing ({path} not found); install the pinned "
                        f"nvidia-pytriton wheel with 'make setup', or pass --url to use an external server.")
    return path


def tritonserver_binary() -> Path:
    return _pytriton_dir() / "bin" / "tritonserver"


def perf_analyzer_binary() -> Path:
    """The perf_analyzer carried by the tritonclient 2.51 wheel (installed next to this venv's python)."""
    path = Path(sys.executable).parent / "perf_analyzer"
    if not path.is_file():
        raise UserError(f"perf_analyzer is missing ({path} not found); install the pinned 'tritonclient[all]' "
                        f"wheel with 'make setup'.")
    return path


def _prepend(var: str, paths: list[str], env: dict[str, str]) -> None:
    old = env.get(var, "")
    env[var] = os.pathsep.join(paths + ([old] if old else []))


def tritonserver_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of the embedded tritonserver and its Python backend stubs.

    The venv's own libpython must come first: otherwise the stub links Debian's system libpython 3.11.2 and
    dies with "'_thread.RLock' object has no attribute '_recursion_count'". The stub embeds an isolated
    interpreter that ignores PYTHONPATH and finds its prefix by looking up `python3` on PATH: the venv's bin/
    first makes it use the venv's site-packages (numpy, onnxruntime), as pytriton itself does.
    """
    env = dict(os.environ if base is None else base)
    _prepend("LD_LIBRARY_PATH", [str(sysconfig.get_config_var("LIBDIR")),
                                 str(site_packages() / "nvidia_pytriton.libs")], env)
    _prepend("PATH", [str(Path(sys.prefix) / "bin")], env)
    return env


def perf_analyzer_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for perf_analyzer: it links libcudart.so.12 (from nvidia-cuda-runtime-cu12, fine without a
    GPU) and libb64.so.0d (Debian package libb64-0d, see deployments/install_system_libs.sh)."""
    cudart = site_packages() / "nvidia" / "cuda_runtime" / "lib"
    if not (cudart / "libcudart.so.12").is_file():
        raise UserError(f"perf_analyzer needs libcudart.so.12 from the nvidia-cuda-runtime-cu12 wheel, not found "
                        f"in {cudart}; run 'make setup'.")
    env = dict(os.environ if base is None else base)
    _prepend("LD_LIBRARY_PATH", [str(cudart)], env)
    return env


def prepare_backend_dir(dest: Path) -> Path:
    """Build a --backend-directory holding the Python backend, its utils module and the stub for this Python.

    The wheel keeps the stub apart from the backend (python_backend_stubs/<major.minor>/); Triton looks for it
    next to libtriton_python.so. Without triton_python_backend_utils.py beside it, loading a model fails with
    "No module named 'model'". Files are copied only when missing or changed, so concurrent servers can share
    the directory.
    """
    src = _pytriton_dir()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    files = {
        "libtriton_python.so": src / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": src / "backends" / "python" / "triton_python_backend_utils.py",
        "triton_python_backend_stub": src / "python_backend_stubs" / version / "triton_python_backend_stub",
    }
    target = Path(dest) / "python"
    target.mkdir(parents=True, exist_ok=True)
    for name, path in files.items():
        if not path.is_file():
            raise UserError(f"the nvidia-pytriton wheel lacks {path} (no Python backend stub for Python {version}?).")
        out = target / name
        if not out.is_file() or out.stat().st_size != path.stat().st_size:
            tmp = target / f".{name}.{os.getpid()}.tmp"
            shutil.copy2(path, tmp)
            os.replace(tmp, out)  # atomic: another server reading the directory never sees half a file
    return Path(dest)
