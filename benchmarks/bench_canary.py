"""The one-run canary audit for the README: epsilon_lb beside the accounted epsilon, and its cost.

    .venv/bin/python benchmarks/bench_canary.py [--canaries 1000] [--out artifacts/bench_canary]

One model configuration (hid_dim 32, 5 autoencoder and 15 classifier epochs, batch 64, embedded digits; the
smoke sweep's shape), audited once per row with the default canary audit (1000 gradient canaries, 95%):
- non-private (epsilon = inf);
- DP on both stages at noise multipliers 0.6, 1.0 and 2.0;
- the deliberate bug: accounted at noise 10 but trained with a hundredth of that noise.
Prints a markdown table (seconds, accounted epsilon, epsilon_lb, consistent?) and writes epsilon_lb.png.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import time
from pathlib import Path

from mnist_etc.config import DataConfig, TrainConfig
from mnist_etc.data import load_split
from mnist_etc.audit.canary import CanaryAuditConfig, run_canary_audit

ROWS = [("non-private", 0.0, 1.0), ("DP noise 2.0", 2.0, 1.0), ("DP noise 1.0", 1.0, 1.0),
        ("DP noise 0.6", 0.6, 1.0), ("bug: accounted noise 10, trained 0.1", 10.0, 0.01)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--canaries", type=int, default=CanaryAuditConfig().canaries)
    ap.add_argument("--out", type=Path, default=Path("artifacts/bench_canary"))
    args = ap.parse_args()
    split = load_split(DataConfig())
    audit = CanaryAuditConfig(canaries=args.canaries)
    results = []
    for label, noise, scale in ROWS:
        cfg = TrainConfig(hid_dim=32, ae_epochs=5, clf_epochs=15, ae_noise_multiplier=noise,
                          clf_noise_multiplier=noise)
        t0 = time.perf_counter()
        rec = run_canary_audit(cfg, split, audit, progress=False, train_noise_scale=scale)
        results.append((label, noise, rec, time.perf_counter() - t0))
        print(f"{label}: epsilon_lb {rec['epsilon_lb']:.3f} accounted {rec['accounted_epsilon']:.3f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores; {args.canaries} canaries, 95% confidence, "
          f"delta 1e-5; command: .venv/bin/python benchmarks/bench_canary.py\n")
    print("| training | accounted epsilon (audit run) | epsilon_lb (95%) | correct / guesses | canary AUC | "
          "consistent | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, noise, rec, secs in results:
        acc = rec["accounted_epsilon"]
        print(f"| {label} | {'inf' if math.isinf(acc) else f'{acc:.3f}'} | {rec['epsilon_lb']:.3f} | "
              f"{rec['correct']} / {rec['guesses']} | {rec['canary_auc']:.3f} | "
              f"{'yes' if rec['consistent'] else 'NO: caught'} | {secs:.0f} |")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args.out.mkdir(parents=True, exist_ok=True)
    dp = [(n, r) for label, n, r, _ in results if 0 < n and "bug" not in label]
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot([n for n, _ in dp], [r["accounted_epsilon"] for _, r in dp], "o-", label="accounted epsilon (PLD)")
    ax.plot([n for n, _ in dp], [r["epsilon_lb"] for _, r in dp], "s-", label="epsilon_lb (one run, 95%)")
    ax.set(xlabel="noise multiplier (both stages)", ylabel="epsilon", yscale="symlog",
           title="accounted epsilon vs one-run lower bound")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "epsilon_lb.png", dpi=110)
    print(f"\nplot: {args.out / 'epsilon_lb.png'}")


if __name__ == "__main__":
    main()
