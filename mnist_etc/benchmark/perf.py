"""Run the real perf_analyzer (from the tritonclient wheel) for one point and parse its CSV report (`-f`).

    >>> m = run_perf_analyzer("127.0.0.1:8001", "grpc", "mnist_etc", None, batch_size=5, concurrency=20,
    ...                       settings=MeasurementSettings(), csv_path=Path("point.csv"), log_path=Path("point.log"))
    >>> m.throughput, m.p99_ms, m.server_queue_ms

perf_analyzer's CSV gives latencies in microseconds; they are kept here in milliseconds. Its throughput is
in inferences per second, and one inference is one image: with `-b 5` a request counts as 5.
A run that does not yield a measurement raises `PerfFailure` with a one-line reason.
"""
from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mnist_etc.benchmark.grid import MeasurementSettings
from mnist_etc.triton.runtime_env import perf_analyzer_binary, perf_analyzer_env

# CSV column -> field (microseconds unless noted). "Client Send" etc. split the average request latency.
CSV_COLUMNS = {
    "Inferences/Second": "throughput",
    "Client Send": "client_send_ms",
    "Network+Server Send/Recv": "network_ms",
    "Server Queue": "server_queue_ms",
    "Server Compute Input": "server_compute_input_ms",
    "Server Compute Infer": "server_compute_infer_ms",
    "Server Compute Output": "server_compute_output_ms",
    "Client Recv": "client_recv_ms",
    "p50 latency": "p50_ms",
    "p90 latency": "p90_ms",
    "p95 latency": "p95_ms",
    "p99 latency": "p99_ms",
}


class PerfFailure(Exception):
    """perf_analyzer gave no measurement; `kind` is unstable, timeout, requests_failed or error."""

    def __init__(self, kind: str, reason: str, seconds: float = 0.0):
        super().__init__(reason)
        self.kind, self.reason, self.seconds = kind, reason, seconds


@dataclass(frozen=True)
class PerfMeasurement:
    concurrency: int
    throughput: float                 # inferences (images) per second
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    client_send_ms: float
    network_ms: float
    server_queue_ms: float
    server_compute_input_ms: float
    server_compute_infer_ms: float
    server_compute_output_ms: float
    client_recv_ms: float
    seconds: float = 0.0              # wall time of the perf_analyzer run

    @property
    def avg_ms(self) -> float:
        """Mean request latency: perf_analyzer's CSV splits it into these parts (they sum to its "Avg latency")."""
        return (self.client_send_ms + self.network_ms + self.server_queue_ms + self.server_compute_input_ms
                + self.server_compute_infer_ms + self.server_compute_output_ms + self.client_recv_ms)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def perf_analyzer_command(url: str, protocol: str, model: str, version: int | None, batch_size: int,
                          concurrency: int, settings: MeasurementSettings, csv_path: Path) -> list[str]:
    """The command line, as a user could paste it (the summary records one per point)."""
    cmd = [str(perf_analyzer_binary()), "-m", model, "-u", url, "-i", protocol, "-b", str(batch_size),
           "--concurrency-range", f"{concurrency}:{concurrency}",
           "--measurement-interval", str(settings.interval_ms),
           "--stability-percentage", f"{settings.stability_percentage:g}",
           "--max-trials", str(settings.max_trials), "-f", str(csv_path)]
    if version is not None:
        cmd += ["-x", str(version)]
    if settings.percentile is not None:
        cmd += ["--percentile", str(settings.percentile)]
    return cmd


def parse_perf_csv(text: str, concurrency: int) -> PerfMeasurement:
    """The row of `concurrency` from perf_analyzer's `-f` CSV (the latency report, microseconds)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    missing = [c for c in ("Concurrency", *CSV_COLUMNS) if rows and c not in rows[0]]
    if not rows or missing:
        raise PerfFailure("error", f"perf_analyzer's CSV lacks {', '.join(missing) or 'rows'}")
    for row in rows:
        if int(row["Concurrency"]) == concurrency:
            values = {}
            for col, name in CSV_COLUMNS.items():
                v = float(row[col])
                values[name] = v if name == "throughput" else v / 1000.0
            return PerfMeasurement(concurrency=concurrency, **values)
    raise PerfFailure("error", f"perf_analyzer's CSV has no row for concurrency {concurrency}")


def _first_error_line(output: str) -> str:
    """The most telling line: an explicit "error:" (e.g. a worker thread's), else any failure line."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for keys in (("error:",), ("error", "failed", "unable", "refused", "unavailable", "invalid")):
        for ln in lines:
            if any(k in ln.lower() for k in keys):
                return ln[:300]
    return (lines[-1] if lines else "no output")[:300]


def classify_failure(returncode: int, output: str, settings: MeasurementSettings) -> PerfFailure:
    if "Failed to obtain stable measurement" in output:
        return PerfFailure("unstable", f"unstable measurement: no 3 consecutive {settings.interval_ms} ms windows "
                                       f"within {settings.stability_percentage:g}% in {settings.max_trials} trials "
                                       f"(raise measurement.interval_ms or stability_percentage)")
    if "Failed to maintain requested inference load" in output or "had error:" in output:
        return PerfFailure("requests_failed", f"requests failed: {_first_error_line(output)}")
    return PerfFailure("error", f"perf_analyzer exited with code {returncode}: {_first_error_line(output)}")


def run_perf_analyzer(url: str, protocol: str, model: str, version: int | None, batch_size: int, concurrency: int,
                      settings: MeasurementSettings, csv_path: Path, log_path: Path) -> PerfMeasurement:
    """Measure one point; stdout/stderr (with the command on top) go to `log_path`, the CSV to `csv_path`."""
    csv_path, log_path = Path(csv_path), Path(log_path)
    csv_path.unlink(missing_ok=True)   # perf_analyzer leaves an old CSV alone when it fails: never read a stale one
    # Run in the CSV's directory with a bare file name, so the command recorded in the log is the one a user
    # can paste (the run's staging directory is renamed when the run completes).
    cmd = perf_analyzer_command(url, protocol, model, version, batch_size, concurrency, settings, Path(csv_path.name))
    start = time.perf_counter()
    # A session of its own, so a timeout kills perf_analyzer and all its load threads, and Ctrl-C in the
    # terminal reaches us first (the point is then abandoned by the caller, not half-recorded).
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=perf_analyzer_env(), text=True, start_new_session=True, cwd=csv_path.parent)
    try:
        output, _ = proc.communicate(timeout=settings.effective_timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        output, _ = proc.communicate()
        seconds = time.perf_counter() - start
        log_path.write_text(" ".join(cmd) + "\n\n" + (output or ""))
        raise PerfFailure("timeout", f"perf_analyzer did not finish within {settings.effective_timeout_s:.0f} s "
                                     f"and was stopped", seconds) from None
    except BaseException:
        _kill_group(proc)
        raise
    seconds = time.perf_counter() - start
    log_path.write_text(" ".join(cmd) + "\n\n" + output)
    if proc.returncode != 0 or not csv_path.is_file():
        failure = classify_failure(proc.returncode, output, settings)
        failure.seconds = seconds
        raise failure
    m = parse_perf_csv(csv_path.read_text(), concurrency)
    return PerfMeasurement(**{**m.to_dict(), "seconds": seconds})


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
