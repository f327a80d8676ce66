"""Launch and own the tritonserver binary shipped in the nvidia-pytriton wheel (no Docker needed).

    >>> with TritonServer(ServerConfig(Path("triton/model_repository"))) as server:
    ...     print(server.grpc_url)        # 127.0.0.1:<free port>
    # on exit the whole process group (server and its Python stubs) is gone

HTTP, gRPC and metrics bind 127.0.0.1 only. Ports are the ones given or free ones. The server log goes to
`artifacts/triton/logs/`. `model_control_mode="explicit"` starts with only `load_models` loaded, so a client
can load and unload models (with config overrides) at run time, as the benchmark does.

Failures: each config.pbtxt the server will load is read first, so a corrupt one is named before Triton
starts; a model version Triton fails to load (a corrupt model.onnx) ends start-up with a `ServerError` of one
sentence naming the model, the version and the file; a port in use or any other start-up failure carries the
last log lines. A `ServerStopped` raised by a client inside the `with` block (the server went away mid-run)
leaves it saying how the server ended.
"""
from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from mnist_etc.errors import UserError
from mnist_etc.ports import free_ports, port_is_free
from mnist_etc.triton.client import ServerStopped
from mnist_etc.triton.repository import DEFAULT_REPOSITORY, model_names, read_model_config, validate_model_name
from mnist_etc.triton.runtime_env import prepare_backend_dir, tritonserver_binary, tritonserver_env

HOST = "127.0.0.1"
CONTROL_MODES = ("none", "explicit")
LOG_DIR = Path("artifacts/triton/logs")
BACKEND_DIR = Path("artifacts/triton/backends")   # generated from the wheel at start-up, git-ignored


class ServerError(UserError):
    """Triton did not start or died; the message carries the last lines of its log."""


@dataclass(frozen=True)
class ServerConfig:
    model_repository: Path = DEFAULT_REPOSITORY
    http_port: int = 0                 # 0 = pick a free port
    grpc_port: int = 0
    metrics_port: int = 0
    model_control_mode: str = "none"   # "none": load every model; "explicit": load `load_models`, then on request
    load_models: tuple[str, ...] = ()
    startup_timeout: float = 120.0
    log_dir: Path = LOG_DIR
    backend_dir: Path = BACKEND_DIR
    log_verbose: int = 0
    # Threads of Triton's HTTP front end (--http-thread-count); None = Triton's own default (8). One per two cores
    # by default: on 2 cores 1 thread served 15-20% more than 8 at the course's HTTP shape, its threads otherwise
    # contending with the backend and the client for the cores (benchmarks/bench_efficiency.py).
    http_thread_count: int | None = max(1, (os.cpu_count() or 2) // 2)

    def __post_init__(self) -> None:
        object.__setattr__(self, "load_models", tuple(self.load_models))
        for name in ("http_port", "grpc_port", "metrics_port"):
            port = getattr(self, name)
            if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
                raise UserError(f"{name} must be a port number in 0..65535 (0 = a free one), got {port!r}.")
        given = [p for p in (self.http_port, self.grpc_port, self.metrics_port) if p]
        if len(set(given)) != len(given):
            raise UserError(f"HTTP, gRPC and metrics ports must differ, got {given}.")
        if self.model_control_mode not in CONTROL_MODES:
            raise UserError(f"model control mode must be 'none' or 'explicit', got {self.model_control_mode!r}.")
        for name in self.load_models:
            validate_model_name(name)
        if self.load_models and self.model_control_mode != "explicit":
            raise UserError("choosing models to load needs model control mode 'explicit' (mode 'none' loads all).")
        threads = self.http_thread_count
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise UserError(f"http_thread_count must be an integer >= 1 (or None for Triton's default), got "
                            f"{threads!r}.")
        if not self.startup_timeout > 0:
            raise UserError(f"start-up timeout must be > 0 seconds, got {self.startup_timeout!r}.")


class TritonServer:
    """One tritonserver process (and its Python-backend stubs) in a process group of its own."""

    def __init__(self, cfg: ServerConfig):
        self.cfg = cfg
        self.proc: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}
        self.log_path: Path | None = None
        self.startup_seconds: float | None = None

    # -- addresses -------------------------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        return f"{HOST}:{self.ports['http']}"

    @property
    def grpc_url(self) -> str:
        return f"{HOST}:{self.ports['grpc']}"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.ports['metrics']}/metrics"

    # -- life cycle ------------------------------------------------------------------------------------
    def __enter__(self) -> "TritonServer":
        self.start()
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        code = None
        if isinstance(exc, ServerStopped) and self.proc is not None:
            try:   # a killed server closes its sockets a moment before it is gone
                code = self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                pass   # alive but not answering (hung): the client's sentence stands
        self.stop()
        if code is not None:
            # The client only saw the server go away; its owner can say how it ended.
            raise ServerStopped(exc.what, f"tritonserver {exit_description(code)}",
                                f"its log is {self.log_path}.") from None

    def start(self) -> "TritonServer":
        repo = Path(self.cfg.model_repository)
        if not repo.is_dir():
            raise UserError(f"model repository {str(repo)!r} does not exist; run 'mnist-etc export' first or pass "
                            f"--repository DIR.")
        available = model_names(repo)
        for name in self.cfg.load_models:
            if name not in available:
                raise UserError(f"model {name!r} is not in repository {str(repo)!r}; available: "
                                f"{', '.join(available) or 'none (run mnist-etc export)'}.")
        # Triton reports a corrupt config only in its log, and a truncated one may even load as something else.
        for name in self.cfg.load_models if self.cfg.model_control_mode == "explicit" else available:
            read_model_config(repo, name)
        wanted = {"http": self.cfg.http_port, "grpc": self.cfg.grpc_port, "metrics": self.cfg.metrics_port}
        for kind, port in wanted.items():
            if port and not port_is_free(port):
                raise ServerError(f"{kind} port {port} on {HOST} is already in use; pass another port or 0 for a "
                                  f"free one.")
        backend_dir = prepare_backend_dir(self.cfg.backend_dir)
        attempts = 3 if 0 in wanted.values() else 1  # free ports can be taken between choice and bind: retry
        for attempt in range(attempts):
            free = iter(free_ports(3))
            self.ports = {k: p or next(free) for k, p in wanted.items()}
            try:
                self._launch(repo, backend_dir)
                return self
            except ServerError as exc:
                if attempt + 1 < attempts and "already in use" in str(exc):
                    continue
                raise
        return self

    def _command(self, repo: Path, backend_dir: Path) -> list[str]:
        cmd = [str(tritonserver_binary()), f"--model-repository={repo.resolve()}",
               f"--backend-directory={backend_dir.resolve()}",
               f"--http-address={HOST}", f"--http-port={self.ports['http']}",
               f"--grpc-address={HOST}", f"--grpc-port={self.ports['grpc']}",
               f"--metrics-address={HOST}", f"--metrics-port={self.ports['metrics']}",
               f"--model-control-mode={self.cfg.model_control_mode}", f"--log-verbose={self.cfg.log_verbose}",
               "--allow-gpu-metrics=false", "--exit-timeout-secs=20"]
        if self.cfg.http_thread_count is not None:
            cmd.append(f"--http-thread-count={self.cfg.http_thread_count}")
        cmd += [f"--load-model={name}" for name in self.cfg.load_models]
        # Ties the server's life to this process if it is killed outright (no atexit runs then). Only from
        # the main thread: the signal fires when the *thread* that started the child ends.
        if shutil.which("setpriv") and threading.current_thread() is threading.main_thread():
            cmd = ["setpriv", "--pdeathsig", "TERM", "--"] + cmd
        return cmd

    def _launch(self, repo: Path, backend_dir: Path) -> None:
        self.cfg.log_dir.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.log_path = self.cfg.log_dir / f"tritonserver-{stamp}-{os.getpid()}-{self.ports['grpc']}.log"
        start = time.perf_counter()
        with open(self.log_path, "wb") as log:
            # A session of its own: Ctrl-C in the terminal reaches us, not the server, and stop() can signal the
            # whole group (server plus Python stubs) so no orphan survives.
            self.proc = subprocess.Popen(self._command(repo, backend_dir), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=tritonserver_env(), start_new_session=True)
        try:
            self._wait_ready(start)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.perf_counter() - start

    def _wait_ready(self, start: float) -> None:
        url = f"http://{self.http_url}/v2/health/ready"
        while True:
            code = self.proc.poll()
            if code is not None:
                raise self._load_failure() or ServerError(
                    f"tritonserver exited with code {code} during start-up: {self._diagnosis()}\n"
                    f"last lines of {self.log_path}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    # Still alive: a server that lost its port to another one must not pass for ready.
                    if resp.status == 200 and self.proc.poll() is None:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.perf_counter() - start > self.cfg.startup_timeout:
                raise self._load_failure() or ServerError(
                    f"tritonserver was not ready after {self.cfg.startup_timeout:g} s ({self._diagnosis()}); "
                    f"last lines of {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.1)

    def _log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def _load_failure(self) -> ServerError | None:
        """One sentence when a model version failed to load (and nothing the diagnosis knows better)."""
        text = self._log_text()
        if "already in use" in text or ONNXRUNTIME_MISSING in text:
            return None
        failed = describe_load_failure(text, Path(self.cfg.model_repository).resolve())
        return ServerError(f"{failed}; the server log is {self.log_path}.") if failed else None

    def _diagnosis(self) -> str:
        text = self._log_text()
        if "already in use" in text or "Address already in use" in text:
            return f"a port is already in use (ports {self.ports})"
        failed = [ln.split("failed to load", 1)[1].strip() for ln in text.splitlines() if "failed to load '" in ln]
        if ONNXRUNTIME_MISSING in text:
            return ("a model needs the onnxruntime backend, which the pip-shipped server lacks: serve the "
                    "python-backend model of the same export (the name without '_onnx'), or use the official "
                    "container (triton/README.md)")
        if failed:
            return "model failed to load: " + failed[0].strip().strip('"')[:300]
        return "see the log"

    def log_tail(self, n: int = 15) -> str:
        """The last n log lines, leaving out the option and model tables Triton prints at start-up."""
        if not self.log_path or not self.log_path.exists():
            return "(no log)"
        with open(self.log_path, errors="replace") as f:
            lines = (ln for ln in f if ln.strip() and not ln.startswith(("|", "+-")))
            return "".join(deque(lines, maxlen=n)).rstrip()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the process group, wait, then SIGKILL whatever is left (stubs included)."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # the leader of its own session, so pid == process-group id
        if self.proc.poll() is None:
            _signal_group(pgid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(pgid, signal.SIGKILL)
                self.proc.wait()
        _signal_group(pgid, signal.SIGKILL)  # stubs still in the group after the server exited
        self.proc = None


ONNXRUNTIME_MISSING = "unable to find backend library for backend 'onnxruntime'"
LOAD_FAILURE = re.compile(r"failed to load '([^']+)' version (\d+): (.+)")
ORT_FAILURE = re.compile(r"\[ONNXRuntimeError\] : \d+ : (\w+) : (?:Load model from \S+ failed:)?(.*)")


def describe_load_failure(log_text: str, repository: Path) -> str | None:
    """The first model version Triton's log says it failed to load, as a sentence naming the model, the
    version and the file at fault (model.onnx or model.py when the reason names it, else the version
    directory), or None."""
    found = LOAD_FAILURE.search(log_text)
    if found is None:
        return None
    model, version, reason = found.groups()
    # One escaped log line; the Python backend appends the stub's Python stack after "\n\nAt:".
    reason = re.split(r"\\n|\n", reason)[0].strip().rstrip('"').strip().removeprefix("Internal: ")
    version_dir = repository / model / version
    named = [f for f in (version_dir / "model.onnx", version_dir / "model.py") if str(f) in reason]
    ort = ORT_FAILURE.search(reason)
    if ort:
        reason = f"ONNX Runtime: {ort.group(1)}, {ort.group(2).strip().rstrip('.')}"
    return (f"Triton could not load model {model!r} version {version} from {named[0] if named else version_dir} "
            f"({reason[:300]}); re-export the model ('mnist-etc export') or remove {version_dir}")


def exit_description(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            pass
    return f"exited with code {code}"


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
