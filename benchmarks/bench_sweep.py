"""Sweep figures: seconds per smoke trial, smoke-sweep wall time at parallelism 1 and 2, and the Pareto
front of a default.yaml sweep.

    .venv/bin/python benchmarks/bench_sweep.py smoke                  # ~2 min on 2 quiet cores
    .venv/bin/python benchmarks/bench_sweep.py default --trials 24    # the Pareto-front figure (~20-30 min)
    .venv/bin/python benchmarks/bench_sweep.py smoke --runner local   # without Prefect, for comparison

Each run uses fresh study names (suffixed with the time) under `--artifacts` (default
artifacts/bench), so figures never mix with earlier trials. Results are printed and written to
<artifacts>/bench_sweep_<mode>_<runner>.json. `default` writes the plot to <artifacts>/sweeps/<study>/pareto.png.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from mnist_etc.atomic import write_json_atomic  # noqa: E402
from mnist_etc.sweep.space import load_search_space  # noqa: E402


def run(space_path: Path, study: str, artifacts: Path, runner: str, **overrides) -> dict:
    """One sweep as a user runs it (the Prefect flow on threads, or the library loop); wall time measured
    around the whole sweep, Prefect's temporary server start-up excluded (it is paid once, in warm_up)."""
    t0 = time.perf_counter()
    if runner == "prefect":
        from flows.sweep import sweep

        result = sweep(space=str(space_path), study=study, artifacts=str(artifacts), **overrides)
    else:
        from mnist_etc.sweep import LocalRunner, SweepOptions, run_sweep

        space = load_search_space(space_path).with_overrides(study=study, **overrides)
        result = run_sweep(space, SweepOptions.build(artifacts=artifacts), LocalRunner(space.parallelism)).to_dict()
        result.pop("markdown", None)
    result["bench_wall_seconds"] = time.perf_counter() - t0
    return result


def warm_up(space_path: Path, artifacts: Path, runner: str) -> None:
    """Load the data, TensorFlow and (for Prefect) its temporary server before anything is timed."""
    import tempfile

    from mnist_etc.sweep.trial import TrialSpec, cached_split, run_trial

    space = load_search_space(space_path)
    cached_split(space.data)
    params = {name: p.extremes()[0] for name, p in space.params.items()}
    with tempfile.TemporaryDirectory() as tmp:
        run_trial(TrialSpec("warmup", 0, params, space.train_config(params), space.data,
                            space.attack, str(Path(tmp) / "trial-0"), tuple(space.objective_names)))
    if runner == "prefect":
        from prefect import flow

        @flow(name="warm-up")
        def nothing() -> None:
            return None

        t0 = time.perf_counter()
        nothing()
        print(f"Prefect temporary server and first flow run: {time.perf_counter() - t0:.1f} s (not in the figures)")


def smoke(args: argparse.Namespace) -> dict:
    space_path = ROOT / "search_spaces" / "smoke.yaml"
    warm_up(space_path, args.artifacts, args.runner)
    stamp = time.strftime("%H%M%S")
    runs = {}
    for k in (1, 2):
        r = run(space_path, f"bench-smoke-p{k}-{stamp}", args.artifacts, args.runner, parallelism=k,
                trials=args.trials)
        per_trial = r["trial_seconds"]
        runs[k] = {"wall_seconds": round(r["bench_wall_seconds"], 1), "trials": r["ran"],
                   "wall_seconds_per_trial": round(r["bench_wall_seconds"] / max(1, r["ran"]), 2),
                   "trial_seconds_mean": round(statistics.mean(per_trial), 2) if per_trial else None,
                   "trial_seconds_min": round(min(per_trial), 2) if per_trial else None,
                   "trial_seconds_max": round(max(per_trial), 2) if per_trial else None,
                   "best_accuracy": r["best_accuracy"], "lowest_leakage": r["lowest_leakage"],
                   "pareto_png": r["files"].get("pareto_png")}
        print(f"parallelism {k}: {runs[k]}")
    ratio = runs[1]["wall_seconds"] / runs[2]["wall_seconds"]
    result = {"mode": "smoke", "runner": args.runner, "cpus": os.cpu_count(), "trials": args.trials or 8,
              "parallelism_1": runs[1], "parallelism_2": runs[2], "speedup_p2_over_p1": round(ratio, 2)}
    print(f"\nsmoke sweep ({result['trials']} trials, {args.runner}, {os.cpu_count()} CPUs): "
          f"p1 {runs[1]['wall_seconds']} s, p2 {runs[2]['wall_seconds']} s, speed-up x{ratio:.2f}; "
          f"seconds per trial (in-trial, p1) mean {runs[1]['trial_seconds_mean']} "
          f"[{runs[1]['trial_seconds_min']}..{runs[1]['trial_seconds_max']}]")
    return result


def default(args: argparse.Namespace) -> dict:
    space_path = ROOT / "search_spaces" / "default.yaml"
    warm_up(space_path, args.artifacts, args.runner)
    study = args.study or f"bench-default-{time.strftime('%H%M%S')}"
    overrides = {k: v for k, v in (("trials", args.trials), ("parallelism", args.parallelism)) if v}
    r = run(space_path, study, args.artifacts, args.runner, **overrides)
    winner = r.get("winner") or {}
    result = {"mode": "default", "runner": args.runner, "study": study, "trials_completed": r["counts"]["COMPLETE"],
              "trials_failed": r["counts"]["FAIL"], "wall_seconds": round(r["bench_wall_seconds"], 1),
              "trial_seconds_mean": round(statistics.mean(r["trial_seconds"]), 1) if r["trial_seconds"] else None,
              "best_accuracy": r["best_accuracy"], "lowest_leakage": r["lowest_leakage"],
              "winner": {k: winner.get(k) for k in ("trial", "values", "params", "epsilon", "model_dir", "reason")},
              "pareto_png": r["files"].get("pareto_png"), "summary_md": r["files"].get("summary_md")}
    print(json.dumps(result, indent=2))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("smoke", "default"))
    parser.add_argument("--runner", choices=("prefect", "local"), default="prefect",
                        help="the Prefect flow on threads (default) or the library loop without Prefect")
    parser.add_argument("--trials", type=int, help="override the space's trials")
    parser.add_argument("--parallelism", type=int, help="default mode: override the space's parallelism")
    parser.add_argument("--study", help="default mode: study name (reuse one to extend a sweep)")
    parser.add_argument("--artifacts", type=Path, default=ROOT / "artifacts" / "bench")
    args = parser.parse_args()
    result = smoke(args) if args.mode == "smoke" else default(args)
    out = args.artifacts / f"bench_sweep_{args.mode}_{args.runner}.json"
    write_json_atomic(out, result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
