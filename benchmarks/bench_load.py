"""Load held: perf_analyzer at a fixed concurrency for many minutes against the served champion, to catch a
leak or a slow failure that a benchmark point of a few seconds never sees.

    .venv/bin/python benchmarks/bench_load.py                       # 10 minutes at concurrency 64
    .venv/bin/python benchmarks/bench_load.py --minutes 1 --repository /tmp/repo --model mnist_etc
    # -> markdown table on stdout; artifacts/benchmarks/load-<time>/ minutes.csv, load.json, raw/

The embedded tritonserver (mnist_etc.triton.server) serves `--model` from `--repository` (default: the
champion as `mnist-etc export` publishes it, triton/model_repository/mnist_etc). After a short warm-up
(allocations that come with the first load are not a leak), each minute is one perf_analyzer run of three
20 s windows (stability not judged: the load is held, not tuned), back to back; on a busy machine its windows
stretch, so each row also gives its wall seconds. Per minute: throughput, p50/p99 latency, failed requests
(Triton's own counters, nv_inference_request_failure, plus any perf_analyzer failure) and the RSS of
tritonserver and of its Python backend stubs (/proc/<pid>/status VmRSS, sampled every second).

Verdict: tritonserver's mean RSS in the last minute is within 5% of the first minute's, and no request
failed. Exit 0 when it holds, 1 when not, 2 when the run could not start.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import os
import platform
import re
import statistics
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mnist_etc.atomic import staged_dir, write_json_atomic, write_text_atomic  # noqa: E402
from mnist_etc.errors import DiskFull, UserError, is_disk_full  # noqa: E402

MAX_RSS_GROWTH = 0.05
WINDOWS_PER_MINUTE = 3   # perf_analyzer judges (here: merely reports) over its last 3 windows


# ---------------------------------------------------------------------------------------------- memory

def rss_kib(pid: int) -> int | None:
    """VmRSS of a live process, in KiB; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) if found else None


def children(pid: int) -> list[int]:
    """Direct children of `pid` (tritonserver's Python backend stubs)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:   # field 4, after "(comm)" which may hold spaces
                out.append(int(entry.name))
    return out


class RssSampler(threading.Thread):
    """Samples (seconds since start, server KiB, stubs KiB) every `period` seconds until stopped."""

    def __init__(self, pid: int, period: float = 1.0):
        super().__init__(daemon=True)
        self.pid, self.period, self.samples = pid, period, []
        self.t0 = time.monotonic()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            server = rss_kib(self.pid)
            if server is not None:
                stubs = sum(v for v in map(rss_kib, children(self.pid)) if v is not None)
                self.samples.append((time.monotonic() - self.t0, server, stubs))
            self._stop_event.wait(self.period)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)

    def between(self, start: float, end: float) -> list[tuple[float, int, int]]:
        return [s for s in self.samples if start <= s[0] <= end]


# ---------------------------------------------------------------------------------------------- Triton's counters

def request_counters(metrics_url: str, model: str) -> dict[str, float] | None:
    """Triton's cumulative success and failure request counts for `model` (all versions); None if unreadable."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=10) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    out = {"success": 0.0, "failure": 0.0}
    for kind in out:
        for m in re.finditer(rf'^nv_inference_request_{kind}{{([^}}]*)}} (\S+)$', text, re.M):
            if f'model="{model}"' in m.group(1):
                out[kind] += float(m.group(2))
    return out


# ---------------------------------------------------------------------------------------------- one minute

@dataclass
class Minute:
    minute: int                           # 1-based
    seconds: float
    images_per_second: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    requests_ok: int | None = None        # Triton's count over the minute
    requests_failed: int | None = None    # Triton's count over the minute
    perf_error: str = ""                  # perf_analyzer gave no measurement (its own failure, e.g. refused)
    server_rss_mib: float | None = None   # mean over the minute's samples
    server_rss_max_mib: float | None = None
    stubs_rss_mib: float | None = None

    @property
    def failed(self) -> bool:
        return bool(self.perf_error) or bool(self.requests_failed)


def measure_minute(index: int, server, model: str, concurrency: int, batch_size: int, sampler: RssSampler,
                   raw_dir: Path, window_ms: int) -> Minute:
    from mnist_etc.benchmark.grid import MeasurementSettings
    from mnist_etc.benchmark.perf import PerfFailure, run_perf_analyzer

    # Loose stability on purpose: three windows and done, whatever they measure.
    settings = MeasurementSettings(interval_ms=window_ms, stability_percentage=1000, max_trials=WINDOWS_PER_MINUTE)
    before = request_counters(server.metrics_url, model)
    start = time.monotonic() - sampler.t0
    row = Minute(index, 0.0)
    try:
        m = run_perf_analyzer(server.grpc_url, "grpc", model, None, batch_size, concurrency, settings,
                              raw_dir / f"minute-{index:02d}.csv", raw_dir / f"minute-{index:02d}.log")
        row.images_per_second, row.p50_ms, row.p99_ms = m.throughput, m.p50_ms, m.p99_ms
    except PerfFailure as exc:
        row.perf_error = exc.reason
    end = time.monotonic() - sampler.t0
    row.seconds = end - start
    after = request_counters(server.metrics_url, model)
    if before is not None and after is not None:
        row.requests_ok = int(after["success"] - before["success"])
        row.requests_failed = int(after["failure"] - before["failure"])
    samples = sampler.between(start, end)
    if samples:
        row.server_rss_mib = statistics.fmean(s[1] for s in samples) / 1024
        row.server_rss_max_mib = max(s[1] for s in samples) / 1024
        row.stubs_rss_mib = statistics.fmean(s[2] for s in samples) / 1024
    return row


# ---------------------------------------------------------------------------------------------- verdict and report

@dataclass
class Verdict:
    rss_growth: float | None
    stubs_rss_growth: float | None
    failed_requests: int
    failed_minutes: int
    passed: bool
    reasons: list[str] = field(default_factory=list)


def judge(rows: list[Minute], server_alive: bool, warmup: Minute | None = None) -> Verdict:
    def growth(key: str) -> float | None:
        first, last = getattr(rows[0], key), getattr(rows[-1], key)
        return None if not first or last is None else last / first - 1

    rss, stubs = growth("server_rss_mib"), growth("stubs_rss_mib")
    failed = sum(r.requests_failed or 0 for r in rows + ([warmup] if warmup else []))
    failed_minutes = sum(r.failed for r in rows)
    reasons = []
    if rss is None:
        reasons.append("tritonserver RSS could not be read")
    elif rss >= MAX_RSS_GROWTH:
        reasons.append(f"tritonserver RSS grew {rss:+.1%} (last minute vs first; bound {MAX_RSS_GROWTH:.0%})")
    if failed:
        reasons.append(f"{failed} request(s) failed (Triton's nv_inference_request_failure)")
    if warmup is not None and warmup.perf_error:
        reasons.append(f"perf_analyzer failed during the warm-up ({warmup.perf_error})")
    if any(r.perf_error for r in rows):
        reasons.append(f"perf_analyzer failed in {sum(bool(r.perf_error) for r in rows)} minute(s)")
    if any(r.requests_failed is None for r in rows):
        reasons.append("Triton's request counters could not be read in some minute")
    if not server_alive:
        reasons.append("tritonserver was no longer running at the end")
    return Verdict(rss, stubs, failed, failed_minutes, not reasons, reasons)


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def markdown(rows: list[Minute], verdict: Verdict, context: dict) -> str:
    lines = [f"Load held: perf_analyzer over gRPC at concurrency {context['concurrency']}, {context['batch_size']} "
             f"image(s) per request, {len(rows)} minute(s) against `{context['model']}` on the embedded "
             f"tritonserver ({context['machine']}; perf_analyzer and Triton share the cores).", "",
             "| minute | seconds | images/s | p50 ms | p99 ms | requests ok | failed | tritonserver RSS MiB "
             "| stubs RSS MiB |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        failed = "n/a" if r.requests_failed is None else str(r.requests_failed)
        if r.perf_error:
            failed += f" (perf_analyzer: {r.perf_error[:80]})"
        lines.append(f"| {r.minute} | {r.seconds:.0f} | {_fmt(r.images_per_second, ',.0f')} | {_fmt(r.p50_ms, '.2f')} | "
                     f"{_fmt(r.p99_ms, '.2f')} | {_fmt(r.requests_ok, ',')} | {failed} | "
                     f"{_fmt(r.server_rss_mib, '.1f')} | {_fmt(r.stubs_rss_mib, '.1f')} |")
    lines += ["", f"**Verdict: {'PASSED' if verdict.passed else 'FAILED'}**: tritonserver RSS growth "
                  f"{_fmt(verdict.rss_growth, '+.1%')} (last minute vs first, bound < {MAX_RSS_GROWTH:.0%}), "
                  f"Python-backend stubs {_fmt(verdict.stubs_rss_growth, '+.1%')} (reported, not judged); "
                  f"{verdict.failed_requests} failed request(s)."
                  + ("" if verdict.passed else " " + "; ".join(verdict.reasons) + ".")]
    if len(rows) == 1:
        lines.append("(One minute: the growth compares that minute with itself; run 10 for the verdict.)")
    return "\n".join(lines) + "\n"


def minutes_csv(rows: list[Minute]) -> str:
    buf = io.StringIO()
    names = list(asdict(rows[0]))
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if v is None else v for k, v in asdict(r).items()})
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=int, default=10, help="how long the load is held (default 10)")
    p.add_argument("--concurrency", type=int, default=64, help="requests in flight (default 64)")
    p.add_argument("--batch-size", type=int, default=1, help="images per request, perf_analyzer -b (default 1)")
    p.add_argument("--repository", type=Path, default=Path("triton/model_repository"),
                   help="model repository (default triton/model_repository, where 'mnist-etc export' puts the "
                        "champion)")
    p.add_argument("--model", default="mnist_etc", help="served model, Python backend (default mnist_etc)")
    p.add_argument("--window-ms", type=int, default=20_000,
                   help="perf_analyzer window; a minute is 3 of them (default 20000)")
    p.add_argument("--warmup-s", type=float, default=10.0,
                   help="load before the first minute, not reported (default 10; 0 = none)")
    p.add_argument("--out", type=Path, default=Path("artifacts/benchmarks"),
                   help="where load-<time>/ goes (default artifacts/benchmarks)")
    args = p.parse_args(argv)
    for name in ("minutes", "concurrency", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.window_ms < 100:
        p.error(f"--window-ms must be >= 100, got {args.window_ms}")
    if args.warmup_s < 0:
        p.error(f"--warmup-s must be >= 0, got {args.warmup_s}")

    from mnist_etc.triton.server import ServerConfig, TritonServer

    started = dt.datetime.now()
    run = f"load-{started.strftime('%Y%m%d-%H%M%S')}"
    run_dir = args.out / run
    context = {"model": args.model, "repository": str(args.repository), "concurrency": args.concurrency,
               "batch_size": args.batch_size, "minutes": args.minutes, "window_ms": args.window_ms,
               "machine": f"{os.cpu_count()} CPUs, {platform.machine()}",
               "loadavg_before": os.getloadavg(), "started": started.isoformat(timespec="seconds")}
    try:
        with staged_dir(run_dir) as tmp:
            raw = tmp / "raw"
            raw.mkdir()
            cfg = ServerConfig(args.repository, model_control_mode="explicit", load_models=(args.model,))
            with TritonServer(cfg) as server:
                pid = server.proc.pid
                context["tritonserver"] = {"pid": pid, "comm": Path(f"/proc/{pid}/comm").read_text().strip(),
                                           "startup_seconds": server.startup_seconds}
                print(f"tritonserver (pid {pid}) ready in {server.startup_seconds:.1f} s at {server.grpc_url}; "
                      f"holding concurrency {args.concurrency} for {args.minutes} minute(s)", flush=True)
                sampler = RssSampler(pid)
                sampler.start()
                rows, warm = [], None
                try:
                    if args.warmup_s > 0:
                        warm = measure_minute(0, server, args.model, args.concurrency, args.batch_size, sampler,
                                              raw, max(100, int(args.warmup_s * 1000 / WINDOWS_PER_MINUTE)))
                        context["warmup"] = asdict(warm)
                        print(f"warm-up: {warm.seconds:.0f} s, tritonserver RSS {_fmt(warm.server_rss_mib, '.1f')} "
                              f"MiB", flush=True)
                    for i in range(1, args.minutes + 1):
                        row = measure_minute(i, server, args.model, args.concurrency, args.batch_size, sampler, raw,
                                             args.window_ms)
                        rows.append(row)
                        print(f"minute {i}/{args.minutes}: {_fmt(row.images_per_second, ',.0f')} images/s, "
                              f"p99 {_fmt(row.p99_ms, '.2f')} ms, failed {row.requests_failed}, tritonserver RSS "
                              f"{_fmt(row.server_rss_mib, '.1f')} MiB, stubs {_fmt(row.stubs_rss_mib, '.1f')} MiB"
                              + (f"; perf_analyzer: {row.perf_error}" if row.perf_error else ""), flush=True)
                finally:
                    sampler.stop()
                alive = server.running()
            verdict = judge(rows, alive, warm)
            context["loadavg_after"] = os.getloadavg()
            table = markdown(rows, verdict, context)
            write_text_atomic(tmp / "minutes.csv", minutes_csv(rows))
            write_text_atomic(tmp / "summary.md", table)
            write_json_atomic(tmp / "load.json", {
                "run": run, "context": context, "minutes": [asdict(r) for r in rows], "verdict": asdict(verdict),
                "rss_samples": [{"t": round(t, 1), "server_kib": s, "stubs_kib": st} for t, s, st in sampler.samples],
                "max_rss_growth": MAX_RSS_GROWTH})
    except UserError as exc:   # no repository, no such model, a server that will not start
        print(f"bench_load: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        print(f"bench_load: error: {DiskFull.of(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench_load: interrupted; nothing written.", file=sys.stderr)
        return 130
    print()
    print(table, end="")
    print(f"\nwrote {run_dir}/ (minutes.csv, load.json, summary.md, raw/)")
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    sys.exit(main())
