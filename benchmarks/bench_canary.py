"""The one-run canary audit for the README: epsilon_lb beside the accounted epsilon, how close it comes, its cost.

    .venv/bin/python benchmarks/bench_canary.py [--canaries 100000] [--runs 3] [--out artifacts/bench_canary]

The issue's setting: both stages DP at noise multiplier 1.1, every other training setting at its default
(hid_dim 32, 10 + 20 epochs, batch 64, the embedded digits' training split), the default canary audit
(100,000 white-box canaries scored from every step, 95%). Rows:
- that setting, `--runs` times (audit seeds 0, 1, ...): epsilon_lb (f-DP) and Steinke's beside it, the
  accounted epsilon, what a correct implementation reaches with these canaries (the plan's simulation), and
  the median epsilon_lb / accounted;
- the deliberate bug: the same setting trained with half the accounted noise (must be caught);
- microbatches 64 (= the batch size): accounted at noise / 2, so the bound should sit far below it.
Prints a markdown table and writes epsilon_lb.png.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from pathlib import Path

from mnist_etc.audit.canary import CanaryAuditConfig, run_canary_audit
from mnist_etc.config import DataConfig, TrainConfig
from mnist_etc.data import load_split

SETTING = dict(ae_noise_multiplier=1.1, clf_noise_multiplier=1.1)


def _f(x) -> str:
    return "-" if x is None else "inf" if isinstance(x, float) and math.isinf(x) else f"{x:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--canaries", type=int, default=CanaryAuditConfig().canaries)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("artifacts/bench_canary"))
    args = ap.parse_args()
    split = load_split(DataConfig())
    rows = [(f"sigma 1.1 both stages, run {i + 1}", TrainConfig(**SETTING), i, 1.0) for i in range(args.runs)]
    rows += [("bug: trained with noise x0.5", TrainConfig(**SETTING), 0, 0.5),
             ("microbatches 64 (accounted at sigma / 2)", TrainConfig(**SETTING, microbatches=64), 0, 1.0)]
    results = []
    for label, cfg, seed, scale in rows:
        t0 = time.perf_counter()
        rec = run_canary_audit(cfg, split, CanaryAuditConfig(canaries=args.canaries, seed=seed), progress=False,
                               train_noise_scale=scale)
        results.append((label, rec))
        print(f"{label}: epsilon_lb {rec['epsilon_lb']:.3f} (Steinke {rec['epsilon_lb_steinke']:.3f}) accounted "
              f"{rec['accounted_epsilon']:.3f}, expected {_f(rec['expected_epsilon_lb'])}, rejects accounted "
              f"{rec['rejects_accounted']} ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores; {args.canaries} canaries, 95% confidence, "
          f"delta 1e-5, {split.n_train} training digits; command: .venv/bin/python benchmarks/bench_canary.py\n")
    print("| training | accounted epsilon | epsilon_lb (f-DP, 95%) | Steinke's bound | epsilon_lb / accounted | "
          "a correct implementation reaches (simulated) | guesses in / out, correct | rejects the accounted curve | "
          "noise x0.5 caught (plan) | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, rec in results:
        print(f"| {label} | {_f(rec['accounted_epsilon'])} | {rec['epsilon_lb']:.3f} | "
              f"{rec['epsilon_lb_steinke']:.3f} | {_f(rec['fraction_of_accounted'])} | "
              f"{_f(rec['expected_epsilon_lb'])} | {rec['k_in']} / {rec['k_out']}, {rec['correct']} | "
              f"{'YES: caught' if rec['rejects_accounted'] else 'no'} | {rec['catches_2x']} | {rec['seconds']:.0f} |")
    good = [rec for label, rec in results if label.startswith("sigma")]
    if good:
        print(f"\nmedian of {len(good)} runs: epsilon_lb {statistics.median(r['epsilon_lb'] for r in good):.3f}, "
              f"epsilon_lb / accounted {statistics.median(r['fraction_of_accounted'] for r in good):.3f}, "
              f"epsilon_lb / simulated expectation "
              f"{statistics.median(r['fraction_of_expected'] for r in good):.3f}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args.out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    labels = [label.replace(" both stages", "").replace(" (accounted at sigma / 2)", "") for label, _ in results]
    xs = range(len(results))
    ax.bar([x - 0.27 for x in xs], [r["accounted_epsilon"] for _, r in results], 0.27, label="accounted epsilon")
    ax.bar(xs, [r["epsilon_lb"] for _, r in results], 0.27, label="epsilon_lb (f-DP, 95%)")
    ax.bar([x + 0.27 for x in xs], [r["expected_epsilon_lb"] or 0 for _, r in results], 0.27,
           label="a correct implementation (simulated)")
    ax.set_xticks(list(xs), labels, rotation=20, ha="right", fontsize=7)
    ax.set(ylabel="epsilon", title=f"one-run canary audit, {args.canaries:,} white-box canaries")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "epsilon_lb.png", dpi=110)
    print(f"\nplot: {args.out / 'epsilon_lb.png'}")


if __name__ == "__main__":
    main()
