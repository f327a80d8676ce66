"""Triton benchmark figures: the course project's command shape, then the time of the whole seed grid.

    .venv/bin/python benchmarks/bench_triton_grid.py                  # both parts (~15 min on 2 cores)
    .venv/bin/python benchmarks/bench_triton_grid.py --skip-seed      # the course project's shape only (~2 min)

Part 1 is `mnist-etc benchmark --grid search_spaces/benchmark_seed.yaml --instance-count 1,2,4
--max-queue-delay-us 500 --concurrency 20 --strategy brute --measurement-interval-ms 5000 --max-trials 10`
(5 images per request, perf_analyzer's default windows, each point once), on the embedded server, beside
the course project's figures (8-thread laptop, official container, onnxruntime
backend). Its "infer/sec" counted requests of 5 images (Little's law: 20 / 1.011 ms = 19.8k), so compare
its figures with requests/s here; images/s = 5 x requests/s. Part 2 runs the whole seed grid as the file
says (its default: every point screened, the finalists re-measured) and reports its wall time, its points
(unsettled ones included, with their medians) and the final ranking.

Figures are only as quiet as the machine: perf_analyzer, Triton and anything else running share the cores.
Runs go to artifacts/benchmarks/bench-*/ (no MLflow run, no config written into the repository); a JSON of
the figures goes to artifacts/benchmarks/bench_triton_grid.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time
from pathlib import Path

from mnist_etc.atomic import write_json_atomic
from mnist_etc.benchmark import RunOptions, resolve_spec, run_benchmark

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "search_spaces" / "benchmark_seed.yaml"
# The course project's figures at concurrency 20 and queue delay 500 us (original README, "Performance"):
# instance count -> (its "infer/sec" = requests/s of 5 images, its average latency in ms).
COURSE = {1: (19758.5, 1.011), 2: (11991.3, 1.666), 4: (10416.4, 1.919)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repository", default="triton/model_repository")
    ap.add_argument("--model", default="mnist_etc")
    ap.add_argument("--protocol", choices=["http", "grpc"], default=None,
                    help="default: the seed grid's (http, as the course project's perf_analyzer had no -i)")
    ap.add_argument("--skip-seed", action="store_true", help="only the course project's command shape")
    ap.add_argument("--interval-ms", type=int, default=None, help="perf_analyzer window (default: the seed grid's)")
    ap.add_argument("--stability-percentage", type=float, default=None,
                    help="stability rule (default: the seed grid's 10%%; a busy machine may need 25)")
    ap.add_argument("--max-trials", type=int, default=None, help="windows per point (default: the seed grid's)")
    ap.add_argument("--artifacts", default="artifacts")
    args = ap.parse_args()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    options = dict(artifacts=Path(args.artifacts), mlflow=False, write_best=False)
    common = dict(repository=args.repository, model=args.model, protocol=args.protocol, interval_ms=args.interval_ms,
                  stability_percentage=args.stability_percentage, max_trials=args.max_trials)
    log = lambda line: print("  " + line, flush=True)  # noqa: E731

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; load average "
          f"{os.getloadavg()[0]:.2f} at start", flush=True)
    print("part 1: course project's command shape (instance count 1, 2, 4; delay 500 us; concurrency 20)")
    shape_common = {**common, "interval_ms": args.interval_ms or 5000, "max_trials": args.max_trials or 10}
    spec = resolve_spec(SEED, instance_count=[1, 2, 4], max_queue_delay_microseconds=[500], concurrency=[20],
                        baseline="defaults", strategy="brute", **shape_common)
    shape = run_benchmark(spec, RunOptions(run=f"bench-shape-{stamp}", **options), log=log)
    ceiling = shape.summary["in_process_images_per_second"]
    rows = []
    grid_configs = {cfg for cfg, _ in spec.configs()}
    for r in shape.results:
        if r.point.config not in grid_configs:
            continue  # the project's default config (the baseline), measured for the improvement figure only
        n = r.point.config.instance_count
        m = r.measurement
        rows.append({"instance_count": n, "status": r.status, "reason": r.reason,
                     "images_per_second": m.throughput if m else None,
                     "requests_per_second": m.throughput / spec.request_batch_size if m else None,
                     "avg_ms": m.avg_ms if m else None, "p99_ms": m.p99_ms if m else None,
                     "serving_efficiency": r.efficiency(ceiling), "measure_seconds": r.measure_seconds,
                     "reload_seconds": r.reload_seconds, "course_requests_per_second": COURSE[n][0],
                     "course_avg_ms": COURSE[n][1]})
    print(f"\nin-process ceiling (ONNX Runtime, batch {spec.request_batch_size}): {ceiling:,.0f} images/s; "
          f"protocol {spec.protocol}")
    print("| instances | images/s | requests/s | avg ms | p99 ms | efficiency | s/point | course req/s "
          "| course avg ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in sorted(rows, key=lambda x: x["instance_count"]):
        if row["status"] != "ok":
            print(f"| {row['instance_count']} | failed: {row['reason']} | | | | | | "
                  f"{row['course_requests_per_second']:,.0f} | {row['course_avg_ms']:.3f} |")
            continue
        print(f"| {row['instance_count']} | {row['images_per_second']:,.0f} | {row['requests_per_second']:,.0f} | "
              f"{row['avg_ms']:.2f} | {row['p99_ms']:.2f} | {row['serving_efficiency'] or 0:.2f} | "
              f"{row['measure_seconds']:.1f} | {row['course_requests_per_second']:,.0f} | {row['course_avg_ms']:.3f} |")
    figures = {"machine": {"cores": os.cpu_count(), "platform": platform.platform()}, "protocol": spec.protocol,
               "measurement": spec.to_dict()["measurement"],
               "ceiling_images_per_second": ceiling, "shape": rows, "shape_run": str(shape.run_dir),
               "shape_wall_seconds": shape.summary["wall_seconds"]}
    if not args.skip_seed:
        print("\npart 2: the whole seed grid (search_spaces/benchmark_seed.yaml)", flush=True)
        start = time.perf_counter()
        seed = run_benchmark(resolve_spec(SEED, **common), RunOptions(run=f"bench-seed-{stamp}", **options), log=log)
        wall = time.perf_counter() - start
        s = seed.summary
        print(f"\nseed grid: {s['points_ok']} measured ({s['points_unsettled']} unsettled, kept with their medians), "
              f"{s['points_failed']} failed, {s['points_skipped']} not measured, in {wall:.0f} s ({wall / 60:.1f} min) "
              f"including server start and the ceiling; {s['seconds_per_point']:.1f} s per measured point "
              f"({s['seconds_per_point_with_reload']:.1f} s with its reload)")
        for f in seed.analysis.ranking:
            lo, hi = f.throughput_range
            print(f"  re-measured: instances {f.point.config.instance_count}, delay "
                  f"{f.point.config.max_queue_delay_microseconds} us, c {f.point.concurrency}: median {f.throughput:,.0f} "
                  f"images/s [{lo:,.0f}, {hi:,.0f}], p99 {f.p99_ms:.2f} ms over {len(f.results)} runs"
                  + (" (baseline)" if f.point.baseline else ""))
        if s["best_throughput"] is not None:
            best = seed.analysis.best
            print(f"best under {seed.analysis.budget_ms:g} ms p99 (median of {len(best.results)}): instances "
                  f"{best.point.config.instance_count}, "
                  f"delay {best.point.config.max_queue_delay_microseconds} us, concurrency {best.point.concurrency}: "
                  f"{best.throughput:,.0f} images/s, p99 {best.p99_ms:.2f} ms; "
                  + ("the baseline itself" if s["best_is_baseline"] else "no baseline figure within the budget"
                     if s["improvement"] is None else f"{s['improvement']:+.1%} over the baseline"))
        print(f"summary: {seed.run_dir / 'summary.md'}")
        figures.update(seed_run=str(seed.run_dir), seed_wall_seconds=wall, seed_summary=s)
    out = Path(args.artifacts) / "benchmarks" / "bench_triton_grid.json"
    write_json_atomic(out, figures)
    print(f"\nfigures: {out}; load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
