"""Benchmark Triton configurations with perf_analyzer and pick the best under a p99 latency budget.

    from mnist_etc.benchmark import RunOptions, load_grid, run_benchmark

    spec = load_grid("search_spaces/benchmark_smoke.yaml").with_overrides(instance_count=(1, 2))
    outcome = run_benchmark(spec, RunOptions())        # embedded server; RunOptions(url="127.0.0.1:8001")
    print(outcome.markdown)

Modules: `axes` (the settings a grid sweeps; list and range syntax), `grid` (the typed, validated grid and
its YAML), `strategies/` (search strategies behind get_configs()/set_last_results(): adaptive, the default,
and brute force), `perf` (the perf_analyzer runner, its measurement settings, its CSV and its windows),
`reconfigure` (load with a config override, read back), `session` (the server, restarts, one point),
`ceiling` (in-process ONNX Runtime), `analysis` (figures from repeated measurements, best under budget,
verdict, improvement), `results` (a point's row), `report` (plots, summary), `adopt` (the best config into
the repository), `run` (measure, publish, then log to MLflow through mnist_etc.tracking.benchmark). No Prefect
here: see tasks/benchmark.py and flows/benchmark.py.
"""
from mnist_etc.lazy_exports import lazy_exports

# Imported on first use, so that the CLI can read the grid's fields without loading the runner.
_EXPORTS = {"BenchmarkSpec": "grid", "BenchmarkOverrides": "grid", "MeasurementSettings": "grid", "SubGrid": "grid",
            "load_grid": "grid", "resolve_spec": "grid", "spec_from_mapping": "grid", "BenchmarkOutcome": "run",
            "RunOptions": "run", "preflight": "run", "run_benchmark": "run"}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
