"""Verb `benchmark`: sweep Triton's batching and instance settings with perf_analyzer, pick the best under a
p99 latency budget, write it into the model repository (and adopt it with --adopt)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mnist_etc_cli.options import add_settings_options


# Option names that differ from their field (the rest: --field-name); help texts are the fields' descriptions.
FLAG_NAMES = {"max_queue_delay_microseconds": "max-queue-delay-us", "interval_ms": "measurement-interval-ms",
              "timeout_s": "point-timeout-s"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark", help="sweep Triton batching/instance settings with perf_analyzer; best config under a p99 budget",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Measure every configuration of a grid (instance count, max_batch_size, queue delay, preferred batch\n"
            "sizes, ...) at each concurrency with the real perf_analyzer, on the embedded Triton server (started\n"
            "in explicit model-control mode, reconfigured between points without a restart, the loaded config read\n"
            "back before each point) or on the server at --url. The in-process ONNX Runtime throughput at the same\n"
            "batch size is the ceiling: serving efficiency = served / in-process. A point that fails (unstable,\n"
            "refused, server crash: the server is restarted) is recorded with its reason and the run goes on.\n\n"
            "Writes artifacts/benchmarks/<run>/: results.csv, throughput_vs_p99.png, plots/, a heat map\n"
            "(instances x queue delay), summary.md (best configuration under the budget, gain over the baseline),\n"
            "best.json; the best config goes to <repository>/<model>/configs/benchmark-<run>.pbtxt, and is\n"
            "logged to MLflow. Options given here override the grid file, which overrides the built-in defaults;\n"
            "--dry-run shows the resolved points without sending any load."),
        epilog=(
            "examples:\n"
            "  mnist-etc benchmark --grid search_spaces/benchmark_smoke.yaml\n"
            "  mnist-etc benchmark --grid search_spaces/benchmark_seed.yaml --instance-count 1,2,4 \\\n"
            "      --max-queue-delay-us 500 --concurrency 20 --no-prefect        # the course project's command shape\n"
            "  mnist-etc benchmark --url 127.0.0.1:8001 --model mnist_etc --concurrency 1:8 --p99-budget-ms 10\n"
            "  mnist-etc benchmark --adopt artifacts/benchmarks/<run>           # best config becomes config.pbtxt\n"
            "  mnist-etc benchmark --strategy adaptive:finalists=2,repeats=5    # or --strategy brute\n"
            "lists: 1,2,4 or ranges start:end[:step] (end included), e.g. --concurrency 3:6,20\n\n"
            "strategies: adaptive (default) screens every configuration with 3 short windows from its highest\n"
            "concurrency down to the highest within the p99 budget, drops the dominated, and re-measures the\n"
            "finalists (and the baseline) several times, interleaved; the ranking rests on those medians. brute\n"
            "measures every point once. A point that never settles is recorded with the median and spread of\n"
            "its windows, not discarded.\n\n"
            "exit status: 0 a configuration meets the p99 budget (or no budget was set); 1 the run is published\n"
            "but no configuration meets the budget (the best effort, the lowest p99, is shown) or no point could\n"
            "be measured; 2 bad input, nothing measured."))
    p.add_argument("--grid", type=Path, metavar="YAML",
                   help="benchmark grid, e.g. search_spaces/benchmark_smoke.yaml (default: built-in defaults)")
    p.add_argument("--url", metavar="HOST:PORT",
                   help="a running Triton (its gRPC port, or HTTP port with --protocol http) in explicit model-control "
                        "mode; default: start the embedded server")
    p.add_argument("--run", metavar="NAME", help="run name (default: <grid name>-<date>-<time>); a finished run of "
                                                 "the same name is replaced")
    p.add_argument("--dry-run", action="store_true", help="validate and list the points, then stop (no load sent)")
    p.add_argument("--adopt", type=Path, metavar="RUN_DIR",
                   help="make the best config of a finished run the model's config.pbtxt (previous one kept in "
                        "configs/before-<run>.pbtxt), then stop")

    overrides = add_override_options(p)

    o = p.add_argument_group("outputs")
    o.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="output root (default: artifacts)")
    o.add_argument("--mlflow-uri", help="MLflow tracking URI (default: sqlite:///<artifacts>/mlflow.db)")
    o.add_argument("--no-mlflow", action="store_true", help="do not log the run to MLflow")
    o.add_argument("--no-write-best", action="store_true",
                   help="do not write the best config into the model repository")
    o.add_argument("--no-prefect", action="store_true",
                   help="run without Prefect (no temporary Prefect server, no table artifact)")
    p.set_defaults(func=cmd_benchmark, settings={"overrides": overrides})


def add_override_options(parser: argparse.ArgumentParser) -> Any:
    """One option per benchmark override (`mnist_etc.benchmark.grid.OVERRIDES`, grouped as listed there); lists
    and ranges are given as text and expanded by the model itself."""
    from mnist_etc.benchmark.grid import GRID_AXES, OVERRIDES, BenchmarkOverrides

    groups: dict[str, tuple[str, ...]] = {}
    for title, _, names in OVERRIDES:
        groups[title] = groups.get(title, ()) + tuple(names)
    extra: dict[str, dict[str, Any]] = {name: {"metavar": "LIST"} for name in GRID_AXES + ("concurrency",)}
    extra["preferred_batch_size"] = {
        "action": "append", "metavar": "SIZES",
        "help": "one choice per use: 8,16,32,64 or 'none' (Triton prefers max_batch_size); repeat for several choices"}
    return add_settings_options(parser, BenchmarkOverrides, groups=groups, extra=extra,
                                flags={name: f"--{flag}" for name, flag in FLAG_NAMES.items()})


def cmd_benchmark(args: argparse.Namespace) -> int:
    if args.adopt is not None:
        return _adopt(args)
    from mnist_etc.benchmark import RunOptions, preflight, resolve_spec

    # Everything a user can get wrong is checked here, before Prefect or Triton start.
    overrides = args.settings["overrides"].build(args)
    spec = resolve_spec(args.grid, overrides)
    options = RunOptions(url=args.url, run=args.run, artifacts=args.artifacts, mlflow_uri=args.mlflow_uri,
                         mlflow=not args.no_mlflow, write_best=not args.no_write_best)
    if args.dry_run:
        _print_plan(spec, options)
        return 0
    preflight(spec, options)
    if args.no_prefect:
        from mnist_etc.benchmark import run_benchmark

        result = run_benchmark(spec, options).to_dict()
    else:
        from flows.benchmark import benchmark

        result = benchmark(grid=spec, options=options)   # the spec validated above, overrides applied
    print_result(result)
    return 1 if result["summary"]["verdict"] in ("not_met", "nothing_measured") else 0


def print_result(result: dict[str, Any]) -> None:
    s = result["summary"]
    print(f"\nbenchmark {result['run']}: {s['points_ok']} point(s) measured ({s['points_unsettled']} unsettled, "
          f"recorded with their medians), {s['points_failed']} failed, {s['points_skipped']} not measured, in "
          f"{s['wall_seconds']:.0f} s"
          + (f" ({s['seconds_per_point']:.1f} s per measured point)" if s.get("seconds_per_point") else ""))
    print(f"verdict: {s['verdict_text']}")
    if s.get("best_throughput") is not None:
        line = ""
        if s.get("best_serving_efficiency") is not None:
            line += f"serving efficiency {s['best_serving_efficiency']:.2f}"
        if s.get("best_is_baseline"):
            line += "; that is the baseline itself (nothing in the grid beats it)"
        elif s.get("improvement") is not None:
            line += f"; {s['improvement']:+.1%} over the baseline" + (
                " (within the spread of the measurements: not a clear gain)" if s.get("improvement_clear") is False
                else "")
        if line:
            print(line.removeprefix("; "))
    else:
        print("nothing written to the model repository; exit status 1")
    for name, path in result["files"].items():
        print(f"{name}: {path}")
    if result.get("mlflow_run_id"):
        print(f"MLflow run: {result['mlflow_run_id']}")
    if result.get("mlflow_error"):
        print(f"MLflow logging failed: {result['mlflow_error']}")


def _print_plan(spec: Any, options: Any) -> None:
    from mnist_etc.benchmark.report import config_labels

    configs = spec.configs()
    labels = config_labels({i: cfg for i, (cfg, _) in enumerate(configs)})
    print(f"benchmark {spec.name}: model {spec.model!r} version {spec.version or 'newest'} "
          f"{'at ' + options.url if options.url else 'on the embedded server, repository ' + str(spec.repository)}")
    print(f"load: {spec.protocol}, {spec.request_batch_size} image(s)/request; windows "
          f"{spec.measurement.interval_ms} ms, "
          f"stable within {spec.measurement.stability_percentage:g}%, at most {spec.measurement.max_trials} windows")
    budget = "none" if spec.p99_budget_ms is None else f"{spec.p99_budget_ms:g} ms"
    from mnist_etc.benchmark.strategies import describe_strategy

    print(f"judged on {spec.objective} under p99 budget {budget}; strategy {describe_strategy(spec.strategy)}; baseline "
          f"{spec.baseline if isinstance(spec.baseline, str) else spec.baseline.to_dict()}")
    for i, (cfg, conc) in enumerate(configs):
        print(f"  config {i}: {labels[i]}  concurrency {', '.join(map(str, conc))}")
    n = spec.n_points()
    if spec.strategy.name == "adaptive":
        print(f"{n} point(s) in the grid (plus the baseline's unless it is in the grid); the adaptive search measures "
              f"the ones that can win (see --help)")
        return
    # At least 3 windows per point; reloads take about 1.5 s each.
    low = n * 3 * spec.measurement.interval_ms / 1000 + 1.5 * len(configs)
    print(f"{n} point(s) (plus the baseline's unless it is in the grid); at least ~{low / 60:.1f} min of measuring")


def _adopt(args: argparse.Namespace) -> int:
    from mnist_etc.benchmark.adopt import adopt_best

    repository = getattr(args, "repository", None)
    out = adopt_best(args.adopt, Path(repository) if repository else None)
    print(f"{out['config']} now holds the best configuration of run {out['run']}: {out['adopted']}")
    print(f"previous config kept in {out['backup']}")
    print(f"a running server picks it up on its next load of the model (e.g. curl -X POST "
          f"http://127.0.0.1:8000/v2/repository/models/{out['model']}/load) or on restart.")
    return 0
