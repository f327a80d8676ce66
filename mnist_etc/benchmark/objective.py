"""What a benchmark maximises under its latency budget, computed in one place for a point, a figure (a point's
repeats taken together) and a strategy's ranking."""
from __future__ import annotations


def objective_value(objective: str, throughput: float, instance_count: int,
                    ceiling_ips: float | None = None) -> float | None:
    """The figure `objective` names: `throughput` (images/s), `throughput_per_instance`, or `efficiency`
    (throughput over the in-process ONNX Runtime ceiling; None without a ceiling)."""
    if objective == "throughput_per_instance":
        return throughput / instance_count
    if objective == "efficiency":
        return throughput / ceiling_ips if ceiling_ips else None
    return throughput
