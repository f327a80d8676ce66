"""What releasing a sweep's champion costs, and what private selection costs in accuracy (issue 26).

    .venv/bin/python benchmarks/bench_search_privacy.py smoke --repeats 3 --previous /path/to/previous/checkout
    .venv/bin/python benchmarks/bench_search_privacy.py default --trials 16

For each repeat it runs the space as shipped (a private random search: secret seed, K drawn in secret with mean
`trials`, selection on validation accuracy and an attack on held-out non-members) and reports the champion's own
epsilon, its epsilon_search and the accuracies. With `--previous DIR`, a checkout of the previous release, it also
runs that release's own space file there (TPE, an attack on training members and non-members steering the
selection, no search accounting) and accounts what it released by composition of its trials, as it should have.
Planned figures (before any trial) are printed for the space's mean number of trials. Runs without Prefect; each
sweep in a fresh folder under --artifacts (default artifacts/bench/search_privacy).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mnist_etc.atomic import write_json_atomic  # noqa: E402
from mnist_etc.sweep.search_privacy import account_search_of, planned_search_epsilon  # noqa: E402
from mnist_etc.sweep.space import load_search_space, parse_search_space  # noqa: E402
from mnist_etc.sweep.trial import cached_split  # noqa: E402


def private_run(space_path: Path, study: str, artifacts: Path, trials: int | None) -> dict:
    from mnist_etc.sweep import LocalRunner, SweepOptions, run_sweep

    space = load_search_space(space_path).with_overrides(study=study, trials=trials)
    t0 = time.perf_counter()
    summary = run_sweep(space, SweepOptions.build(artifacts=artifacts), LocalRunner(space.parallelism), log=lambda m: None)
    w = summary.winner or {}
    attrs = json.loads((Path(w["trial_dir"]) / "outcome.json").read_text())["user_attrs"] if w else {}
    return {"selection": "private (this release)", "trials": sum(summary.counts.values()),
            "epsilon": w.get("epsilon"), "epsilon_search": w.get("epsilon_search"),
            "method": summary.search.get("method"), "val_accuracy": attrs.get("val_accuracy"),
            "test_accuracy": attrs.get("test_accuracy"), "excess_cosine": attrs.get("excess_cosine"),
            "qualified": w.get("qualified"), "seconds": time.perf_counter() - t0}


def previous_run(previous: Path, space_name: str, study: str, artifacts: Path, trials: int | None) -> dict:
    """The previous release's sweep, run in its own checkout; what it released accounted by composition here."""
    argv = [sys.executable, "-m", "mnist_etc_cli.main", "sweep", "--space", f"search_spaces/{space_name}.yaml",
            "--study", study, "--no-prefect", "--artifacts", str(artifacts)] + (["--trials", str(trials)] if trials else [])
    t0 = time.perf_counter()
    done = subprocess.run(argv, cwd=previous, env={**os.environ, "PYTHONPATH": str(previous)}, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"the previous release's sweep failed: {done.stderr[-2000:]}")
    w = json.loads((artifacts / "sweeps" / study / "winner.json").read_text())
    rows = list(_csv(artifacts / "sweeps" / study / "trials.csv"))
    old = (previous / "search_spaces" / f"{space_name}.yaml").read_text()
    import yaml

    raw = yaml.safe_load(old)
    raw.get("attack", {}).pop("members", None)
    raw.update(study=study, search_accounting="private")
    space = parse_search_space(raw)
    n = cached_split(space.data).n_train
    account = account_search_of(space, n, trials_trained=len(rows))
    return {"selection": "previous release (TPE, members steer it)", "trials": len(rows),
            "epsilon": w.get("epsilon"), "epsilon_search": account.epsilon_search, "method": account.method,
            "val_accuracy": _float(rows, w["trial"], "val_accuracy"),
            "test_accuracy": _float(rows, w["trial"], "test_accuracy"),
            "excess_cosine": _float(rows, w["trial"], "excess_cosine"), "qualified": w.get("qualified"),
            "seconds": time.perf_counter() - t0}


def _csv(path: Path):
    import csv

    with open(path, newline="") as f:
        yield from csv.DictReader(f)


def _float(rows: list[dict], trial: int, key: str) -> float | None:
    row = next((r for r in rows if int(r["number"]) == int(trial)), None)
    try:
        return float(row[key]) if row else None
    except (KeyError, ValueError):
        return None


def fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    return "inf" if x == float("inf") else f"{x:.3f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("space", choices=["smoke", "default"])
    ap.add_argument("--trials", type=int, help="mean number of trials (default: the space's)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--previous", type=Path, help="a checkout of the previous release, to run its selection too")
    ap.add_argument("--artifacts", type=Path, default=ROOT / "artifacts" / "bench" / "search_privacy")
    args = ap.parse_args()
    space_path = ROOT / "search_spaces" / f"{args.space}.yaml"
    space = load_search_space(space_path).with_overrides(trials=args.trials)
    n = cached_split(space.data).n_train
    planned = planned_search_epsilon(space, n)
    print(f"{args.space}: planned before any trial: {planned.statement}")
    rows = []
    stamp = time.strftime("%Y%m%d%H%M%S")
    for r in range(args.repeats):
        study = f"{args.space}-private-{stamp}-{r}"
        rows.append(private_run(space_path, study, args.artifacts / study, args.trials))
        print(rows[-1], flush=True)
        if args.previous:
            study = f"{args.space}-previous-{stamp}-{r}"
            rows.append(previous_run(args.previous.resolve(), args.space, study, (args.artifacts / study).resolve(),
                                     args.trials))
            print(rows[-1], flush=True)
    print("\n| selection | trials | champion epsilon | epsilon_search (how) | val acc | test acc | excess cosine | qualified |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['selection']} | {row['trials']} | {fmt(row['epsilon'])} | {fmt(row['epsilon_search'])} "
              f"({row['method']}) | {fmt(row['val_accuracy'])} | {fmt(row['test_accuracy'])} | "
              f"{fmt(row['excess_cosine'])} | {row['qualified']} |")
    for kind in sorted({r["selection"] for r in rows}):
        acc = [r["test_accuracy"] for r in rows if r["selection"] == kind and r["test_accuracy"] is not None]
        if acc:
            print(f"{kind}: median champion test accuracy {statistics.median(acc):.3f} over {len(acc)} run(s)")
    out = args.artifacts / f"bench_search_privacy_{args.space}.json"
    write_json_atomic(out, {"planned": planned.as_dict(), "runs": rows, "command": sys.argv})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
