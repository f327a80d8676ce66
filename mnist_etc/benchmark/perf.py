"""Run the real perf_analyzer (from the tritonclient wheel) for one point and parse its report.

    >>> m = run_perf_analyzer("127.0.0.1:8001", "grpc", "mnist_etc", None, batch_size=5, concurrency=20,
    ...                       settings=MeasurementSettings(), csv_path=Path("point.csv"), log_path=Path("point.log"))
    >>> m.throughput, m.p99_ms, m.settled, m.throughput_spread

perf_analyzer's CSV gives latencies in microseconds; they are kept here in milliseconds. Its throughput is
in inferences per second, and one inference is one image: with `-b 5` a request counts as 5.

perf_analyzer measures in windows until the last 3 agree within the stability percentage, or gives up after
`max_trials` windows. It runs verbose (`-v`), so its log lists every window's throughput and p99 latency:
a point that does not settle is not thrown away but recorded with the median of its windows, their spread
and `settled=False` (only the throughput and p99 are known then). A run that yields no measurement at all
raises `PerfFailure` with a one-line reason.
"""
from __future__ import annotations

import csv
import io
import os
import re
import signal
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field

from mnist_etc.config import Settings
from mnist_etc.triton.runtime_env import perf_analyzer_binary, perf_analyzer_env

# perf_analyzer judges stability over its last 3 windows: fewer trials can never be stable.
MIN_TRIALS = 3
Positive = Annotated[float, Field(gt=0)]


class MeasurementSettings(Settings):
    """perf_analyzer's measurement window and stability rule (its own defaults, except where noted)."""

    interval_ms: int = Field(5000, ge=100, description="perf_analyzer window (--measurement-interval), in ms",
                             json_schema_extra={"accepts": "an integer >= 100 (milliseconds per window)"})
    stability_percentage: Positive = Field(10.0, description=(
        "max/min of the last 3 windows must be within this (--stability-percentage)"))
    max_trials: int = Field(10, ge=MIN_TRIALS, description=(
        "windows before a point is recorded as unsettled (median and spread of its windows)"),
        json_schema_extra={"accepts": f"an integer >= {MIN_TRIALS} (perf_analyzer judges stability over 3 "
                                      f"windows)"})
    percentile: Annotated[int, Field(ge=1, le=99)] | None = Field(99, description=(
        "judge stability on this latency percentile (99: the budget's, and each window's p99 is then known, so "
        "an unsettled point keeps its figures); null = on the mean latency, as perf_analyzer does by default "
        "(an unsettled point is then recorded as failed)"))
    timeout_s: Positive | None = Field(None, description=(
        "stop perf_analyzer after this many seconds; default: derived from the windows"))

    @property
    def effective_timeout_s(self) -> float:
        # Each trial is one window plus perf_analyzer's own bookkeeping; a generous margin, since a hung
        # perf_analyzer is killed and recorded, not waited for forever.
        return self.timeout_s or 60.0 + 2.0 * self.interval_ms / 1000 * (self.max_trials + 2)


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


NAN = float("nan")


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
    settled: bool = True              # the last 3 windows agreed within the stability percentage
    windows: int = 0                  # windows perf_analyzer measured (0: its log had none)
    # (max - min) / median over the windows the figures rest on (the last 3 if settled, else all); NaN = unknown.
    throughput_spread: float = NAN
    p99_spread: float = NAN

    @property
    def avg_ms(self) -> float:
        """Mean request latency: perf_analyzer's CSV splits it into these parts (they sum to its "Avg latency")."""
        return (self.client_send_ms + self.network_ms + self.server_queue_ms + self.server_compute_input_ms
                + self.server_compute_infer_ms + self.server_compute_output_ms + self.client_recv_ms)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Window:
    """One measurement window of perf_analyzer, from its verbose log."""

    throughput: float
    latency_ms: float                 # the stability percentile's latency (p99 by default), or the mean
    percentile: int | None            # which latency: None = the mean


# "  Pass [3] throughput: 2507.44 infer/sec. p99 latency: 3406 usec" (or "Avg latency: 1915 usec (std ...)")
_WINDOW = re.compile(r"Pass \[\d+\] throughput: ([0-9.eE+-]+) infer/sec\. (?:p(\d+)|Avg) latency: ([0-9.eE+-]+) usec")


def perf_analyzer_command(url: str, protocol: str, model: str, version: int | None, batch_size: int,
                          concurrency: int, settings: MeasurementSettings, csv_path: Path) -> list[str]:
    """The command line, as a user could paste it (the summary records one per point)."""
    cmd = [str(perf_analyzer_binary()), "-m", model, "-u", url, "-i", protocol, "-b", str(batch_size),
           "--concurrency-range", f"{concurrency}:{concurrency}",
           "--measurement-interval", str(settings.interval_ms),
           "--stability-percentage", f"{settings.stability_percentage:g}",
           "--max-trials", str(settings.max_trials), "-f", str(csv_path), "-v"]
    if version is not None:
        cmd += ["-x", str(version)]
    if settings.percentile is not None:
        cmd += ["--percentile", str(settings.percentile)]
    return cmd


def parse_windows(output: str) -> list[Window]:
    """Every window perf_analyzer reported in its verbose output, in order."""
    return [Window(float(t), float(lat) / 1000.0, int(pct) if pct else None)
            for t, pct, lat in _WINDOW.findall(output)]


def spread(values: list[float]) -> float:
    """(max - min) / median: 0.1 means the windows differed by 10% of their median."""
    if not values:
        return NAN
    mid = statistics.median(values)
    return (max(values) - min(values)) / mid if mid else NAN


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


def settled_measurement(m: PerfMeasurement, windows: list[Window], seconds: float) -> PerfMeasurement:
    """perf_analyzer's own figures (its last 3 windows merged), with the spread of those windows."""
    last = windows[-3:]
    p99 = [w.latency_ms for w in last if w.percentile == 99]
    return PerfMeasurement(**{**m.to_dict(), "seconds": seconds, "settled": True, "windows": len(windows),
                              "throughput_spread": spread([w.throughput for w in last]),
                              "p99_spread": spread(p99) if p99 else NAN})


def unsettled_measurement(concurrency: int, windows: list[Window], seconds: float) -> PerfMeasurement:
    """A point whose windows never agreed: the median of all its windows (throughput and p99 only)."""
    tput, p99 = [w.throughput for w in windows], [w.latency_ms for w in windows]
    return PerfMeasurement(concurrency, statistics.median(tput), NAN, NAN, NAN, statistics.median(p99),
                           NAN, NAN, NAN, NAN, NAN, NAN, NAN, seconds=seconds, settled=False,
                           windows=len(windows), throughput_spread=spread(tput), p99_spread=spread(p99))


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
                                       f"within {settings.stability_percentage:g}% in {settings.max_trials} trials, "
                                       f"and no per-window p99 to record it by (set measurement.percentile to 99, "
                                       f"or raise measurement.interval_ms or stability_percentage)")
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
    windows = parse_windows(output)
    if proc.returncode != 0 or not csv_path.is_file():
        failure = classify_failure(proc.returncode, output, settings)
        failure.seconds = seconds
        if failure.kind == "unstable" and windows and all(w.percentile == 99 for w in windows):
            return unsettled_measurement(concurrency, windows, seconds)
        raise failure
    return settled_measurement(parse_perf_csv(csv_path.read_text(), concurrency), windows, seconds)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
