"""One measured (or failed, or skipped) point, and its row in `results.csv`.

Latencies are milliseconds, throughput is images (inferences) per second. A failed point keeps its
configuration and reason and leaves the measurements empty; it is never a candidate for the best. A point
that never settled is `ok` with `settled` false: its throughput and p99 are the medians of its windows, its
`*_spread` columns say how far those windows were apart, and the figures perf_analyzer only gives for a
settled point (p50, the server's queue and compute times) are empty.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any

from mnist_etc.benchmark.objective import objective_value
from mnist_etc.benchmark.perf import PerfMeasurement
from mnist_etc.benchmark.strategies import Point

OK, FAILED, SKIPPED = "ok", "failed", "skipped"
# Why a point failed, in the `failure` column (the `reason` column has the sentence).
FAILURE_KINDS = ("unstable", "crash", "load_refused", "config_mismatch", "timeout", "requests_failed", "error",
                 "server_down", "skipped")
CONFIG_COLUMNS = ("instance_count", "instance_kind", "max_batch_size", "dynamic_batching",
                  "max_queue_delay_microseconds", "preferred_batch_size", "preserve_ordering", "intra_op_threads")
MEASURE_COLUMNS = ("throughput", "requests_per_second", "avg_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms",
                   "client_send_ms", "network_ms", "server_queue_ms", "server_compute_input_ms",
                   "server_compute_infer_ms", "server_compute_output_ms", "client_recv_ms")
WINDOW_COLUMNS = ("settled", "windows", "throughput_spread", "p99_spread")
COLUMNS = ("point", "config_id", "baseline", *CONFIG_COLUMNS, "concurrency", "phase", "repeat", "request_batch_size",
           "protocol", "status", "failure", "reason", *MEASURE_COLUMNS, *WINDOW_COLUMNS, "in_process_images_per_second",
           "serving_efficiency", "within_budget", "config_verified", "reload_seconds", "measure_seconds",
           "server_restarted")


@dataclass
class PointResult:
    index: int
    point: Point
    status: str
    failure: str = ""
    reason: str = ""
    measurement: PerfMeasurement | None = None
    config_verified: bool = False       # the config read back from Triton matched the one asked for
    reload_seconds: float = 0.0
    measure_seconds: float = 0.0
    server_restarted: bool = False      # the server died at this point and was started again

    @property
    def ok(self) -> bool:
        return self.status == OK and self.measurement is not None

    @property
    def throughput(self) -> float:
        return self.measurement.throughput if self.measurement else float("nan")

    @property
    def p99_ms(self) -> float:
        return self.measurement.p99_ms if self.measurement else float("nan")

    @property
    def settled(self) -> bool:
        return self.measurement is not None and self.measurement.settled

    def efficiency(self, ceiling_ips: float | None) -> float | None:
        if not self.ok or not ceiling_ips:
            return None
        return self.throughput / ceiling_ips

    def within_budget(self, budget_ms: float | None) -> bool:
        return self.ok and (budget_ms is None or self.p99_ms <= budget_ms)

    def objective_value(self, objective: str, ceiling_ips: float | None) -> float | None:
        if not self.ok:
            return None
        return objective_value(objective, self.throughput, self.point.config.instance_count, ceiling_ips)

    def to_row(self, batch_size: int, protocol: str, ceiling_ips: float | None,
               budget_ms: float | None) -> dict[str, Any]:
        cfg = self.point.config
        row: dict[str, Any] = {"point": self.index, "config_id": self.point.config_id,
                               "baseline": self.point.baseline}
        for name in CONFIG_COLUMNS:
            value = getattr(cfg, name)
            row[name] = " ".join(map(str, value)) if isinstance(value, tuple) else value
        row.update(concurrency=self.point.concurrency, phase=self.point.phase, repeat=self.point.repeat,
                   request_batch_size=batch_size, protocol=protocol, status=self.status, failure=self.failure,
                   reason=self.reason)
        m = self.measurement
        for name in MEASURE_COLUMNS:
            value = (m.throughput / batch_size if name == "requests_per_second" else getattr(m, name)) if m else None
            row[name] = "" if value is None or math.isnan(value) else round(value, 4 if name.endswith("_ms") else 2)
        row.update(settled=m.settled if m else "", windows=m.windows if m else "")
        for name in ("throughput_spread", "p99_spread"):
            value = getattr(m, name) if m else None
            row[name] = "" if value is None or math.isnan(value) else round(value, 4)
        eff = self.efficiency(ceiling_ips)
        row.update(in_process_images_per_second=round(ceiling_ips, 1) if ceiling_ips else "",
                   serving_efficiency=round(eff, 4) if eff is not None else "",
                   within_budget=self.within_budget(budget_ms) if self.ok else "",
                   config_verified=self.config_verified, reload_seconds=round(self.reload_seconds, 3),
                   measure_seconds=round(self.measure_seconds, 3), server_restarted=self.server_restarted)
        return row


def results_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
