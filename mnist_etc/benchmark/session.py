"""The server side of a benchmark: an embedded Triton (or one at --url), reconfigured and measured per point.

    with BenchmarkSession(spec) as session:             # embedded server, explicit model control
        result = session.measure(point, index=0, raw_dir=Path("raw"))

Each point: make sure the server is alive (restart an embedded one that died), load the point's
configuration as an override unless it is already loaded, read the loaded config back and compare, run
perf_analyzer, read the config back again. Whatever goes wrong becomes a failed `PointResult` with its
reason; only "the server is gone and cannot be restarted" raises (`ServerDown`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from mnist_etc.benchmark.grid import BenchmarkSpec
from mnist_etc.benchmark.perf import PerfFailure, run_perf_analyzer
from mnist_etc.benchmark.reconfigure import (ConfigMismatch, LoadRefused, ModelControl, describe_difference,
                                             same_serving_config)
from mnist_etc.benchmark.results import FAILED, OK, PointResult
from mnist_etc.benchmark.strategies import Point
from mnist_etc.errors import UserError
from mnist_etc.triton.model_config import PYTHON, TritonModelConfig
from mnist_etc.triton.server import LOG_DIR, ServerConfig, ServerError, TritonServer, exit_description


class ServerDown(UserError):
    """The server died and could not be started again (embedded), or cannot be reached (external)."""


class BenchmarkSession:
    def __init__(self, spec: BenchmarkSpec, url: str | None = None, log_dir: Path = LOG_DIR,
                 log: Callable[[str], None] = print):
        self.spec, self.external_url, self.log_dir, self.log = spec, url, Path(log_dir), log
        self.server: TritonServer | None = None
        self.control: ModelControl | None = None
        self.current: TritonModelConfig | None = None    # what Triton serves now, as last read back
        self.initial: TritonModelConfig | None = None     # what it served when the run started
        self.initial_json: str | None = None
        self.backend = PYTHON
        self.restarts = 0
        self.changed_config = False

    # -- life cycle ------------------------------------------------------------------------------------
    def __enter__(self) -> "BenchmarkSession":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """Where perf_analyzer and the control client connect, for the spec's protocol."""
        if self.external_url:
            return self.external_url
        assert self.server is not None
        return self.server.grpc_url if self.spec.protocol == "grpc" else self.server.http_url

    def open(self) -> None:
        spec = self.spec
        if self.external_url is None:
            cfg = ServerConfig(spec.repository, model_control_mode="explicit", load_models=(spec.model,),
                               startup_timeout=spec.startup_timeout_s, log_dir=self.log_dir)
            self.server = TritonServer(cfg)
            self.server.start()
            self.log(f"embedded Triton ready in {self.server.startup_seconds:.1f} s at {self.url} "
                     f"(log {self.server.log_path})")
        self._connect()
        if not self.control.alive():
            raise ServerDown(f"cannot reach a Triton server at {self.url!r} over {spec.protocol}; pass --url "
                             f"HOST:PORT of a running server ({'gRPC' if spec.protocol == 'grpc' else 'HTTP'} port), "
                             f"or omit --url to start the embedded one.")
        if not self.control.ready():
            if spec.version is not None and self.external_url is None:
                # The repository's version policy serves only the newest: load the pinned one explicitly.
                from mnist_etc.triton.repository import read_config

                self._load(read_config(spec.repository, spec.model))
            if not self.control.ready():
                raise UserError(f"model {spec.model!r}{'' if spec.version is None else f' version {spec.version}'} "
                                f"is not ready on {self.url}; check the server's model list ('mnist-etc serve --url "
                                f"{self.url}').")
        self.backend = self.control.backend_of_loaded()
        self.control.backend = self.backend
        self.initial = self.current = self.control.loaded_config()
        self.initial_json = self.control.loaded_config_json()

    def _connect(self) -> None:
        if self.control is not None:
            self.control.close()
        self.control = ModelControl(self.url, self.spec.protocol, self.spec.model, self.backend, self.spec.version)

    def close(self) -> None:
        if (self.external_url and self.control is not None and self.changed_config and self.initial_json
                and self.control.alive()):
            # Leave an external server serving what it served before, not our last override.
            if not self.control.restore(self.initial_json):
                self.log(f"warning: could not restore the configuration {self.spec.model!r} had on {self.url} "
                         f"before the benchmark; reload it from its repository.")
        if self.control is not None:
            self.control.close()
        if self.server is not None:
            self.server.stop()
            self.server = None

    # -- health ----------------------------------------------------------------------------------------
    def alive(self) -> bool:
        if self.server is not None and not self.server.running():
            return False
        return self.control is not None and self.control.alive()

    def _crash_note(self) -> str:
        if self.server is None:
            return f"the server at {self.url} stopped answering"
        code = self.server.proc.poll() if self.server.proc is not None else None
        how = "died" if code is None else exit_description(code)
        return f"tritonserver {how} (its log: {self.server.log_path})"

    def restart(self) -> None:
        """Start the embedded server again after a crash; an external one cannot be restarted from here."""
        if self.server is None:
            raise ServerDown(f"the Triton server at {self.external_url} is not reachable any more; the remaining "
                             f"points cannot be measured.")
        self.server.stop()
        try:
            self.server.start()
        except ServerError as exc:
            raise ServerDown(f"tritonserver died and could not be started again: {str(exc).splitlines()[0]}") from None
        self.restarts += 1
        self._connect()
        self.current = self.control.loaded_config()
        self.log(f"  restarted the embedded Triton ({self.restarts} restart(s) so far) at {self.url}")

    # -- one point ---------------------------------------------------------------------------------------
    def _load(self, cfg: TritonModelConfig) -> TritonModelConfig:
        self.changed_config = True
        try:
            loaded = self.control.load(cfg)
        finally:
            # Whatever happened, know what is served now (a refused load leaves the previous config).
            try:
                self.current = self.control.loaded_config()
            except Exception:
                self.current = None
        return loaded

    def measure(self, point: Point, index: int, raw_dir: Path) -> PointResult:
        spec = self.spec
        result = PointResult(index, point, FAILED)
        if not self.alive():
            self.restart()   # died between points (e.g. while unloading): not this point's fault
        # 1. reconfigure, unless the config is already loaded
        start = time.perf_counter()
        if self.current is None or not same_serving_config(self.current, point.config):
            try:
                self._load(point.config)
            except LoadRefused as exc:
                result.reload_seconds = time.perf_counter() - start
                if not self.alive():
                    return self._crashed(result, "while loading the configuration")
                result.failure, result.reason = "load_refused", f"Triton refused the configuration: {exc}"
                return result
            except ConfigMismatch as exc:
                result.reload_seconds = time.perf_counter() - start
                result.failure, result.reason = "config_mismatch", f"loaded config differs: {exc}"
                return result
            except Exception as exc:  # connection reset mid-load and the like
                result.reload_seconds = time.perf_counter() - start
                if not self.alive():
                    return self._crashed(result, "while loading the configuration")
                result.failure, result.reason = "error", f"loading failed: {type(exc).__name__}: {exc}"[:400]
                return result
        result.reload_seconds = time.perf_counter() - start
        # 2. prove that what is served is what was asked for
        try:
            loaded = self.control.loaded_config()
        except Exception:
            return self._crashed(result, "before the measurement")
        if not same_serving_config(loaded, point.config):
            result.failure = "config_mismatch"
            result.reason = f"loaded config differs: {describe_difference(point.config, loaded)}"
            return result
        # 3. measure
        try:
            m = run_perf_analyzer(self.url, spec.protocol, spec.model, spec.version, spec.request_batch_size,
                                  point.concurrency, point.measurement or spec.measurement,
                                  raw_dir / f"point-{index:03d}.csv",
                                  raw_dir / f"point-{index:03d}.log")
        except PerfFailure as exc:
            result.measure_seconds = exc.seconds
            if not self.alive():
                return self._crashed(result, "during the measurement")
            result.failure, result.reason = exc.kind, exc.reason
            return result
        result.measure_seconds = m.seconds
        # 4. still the same config afterwards (on a shared external server someone else may reload it)
        after = self.control.loaded_config() if self.alive() else None
        if after is None or not same_serving_config(after, point.config):
            if after is None:
                return self._crashed(result, "right after the measurement")
            result.failure = "config_mismatch"
            result.reason = f"the config changed during the measurement: {describe_difference(point.config, after)}"
            return result
        result.status, result.measurement, result.config_verified = OK, m, True
        return result

    def _crashed(self, result: PointResult, when: str) -> PointResult:
        result.failure = "crash"
        result.reason = f"server crashed {when}: {self._crash_note()}"
        self.current = None
        if self.server is not None:
            self.restart()
            result.server_restarted = True
            result.reason += "; restarted for the next point"
        else:
            raise ServerDown(f"{result.reason}; the remaining points cannot be measured.")
        return result
