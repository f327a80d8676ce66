"""Core figures: autoencoder and classifier epoch times (plain vs DP-SGD) and attack victims per second.

    .venv/bin/python benchmarks/bench_core.py [--victims 8] [--n-iter 1024]   # victims per group

Epoch times are medians over epochs after the first (which includes tracing). Prints a markdown table.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics

from mnist_etc.config import AttackConfig, DataConfig, TrainConfig
from mnist_etc.data import load_split
from mnist_etc.privacy.attacks.runner import attack_model
from mnist_etc.training import train


def median_epoch(rows: list[dict[str, float]]) -> float:
    return statistics.median(r["epoch_seconds"] for r in rows[1:] or rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--victims", type=int, default=8)
    ap.add_argument("--n-iter", type=int, default=1024)
    args = ap.parse_args()
    split = load_split(DataConfig())
    base = dict(ae_epochs=4, clf_epochs=6)
    plain = train(TrainConfig(**base), split, progress=False)
    dp = train(TrainConfig(**base, ae_noise_multiplier=1.0, clf_noise_multiplier=1.0), split, progress=False)
    dp_mb = train(TrainConfig(**base, ae_noise_multiplier=1.0, clf_noise_multiplier=1.0, microbatches=16), split,
                  progress=False)
    # The course project's attack settings, own-decoder threat model (its speed is the figure here; leakage
    # per attacker is benchmarks/bench_privacy.py).
    cfg = AttackConfig(attack="own-decoder", victims=args.victims, n_iter=args.n_iter, n_samples=256, n_best=64)
    att = attack_model(plain.networks, split, cfg, progress=False)
    ae_p, ae_d, ae_m = (median_epoch(r.history["autoencoder"]) for r in (plain, dp, dp_mb))
    cl_p, cl_d, cl_m = (median_epoch(r.history["classifier"]) for r in (plain, dp, dp_mb))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"{split.n_train} training digits, batch 64, hid_dim 32")
    print("| figure | plain | DP-SGD (per example) | ratio | DP-SGD (16 microbatches) | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| autoencoder epoch (s) | {ae_p:.2f} | {ae_d:.2f} | {ae_d / ae_p:.1f}x | {ae_m:.2f} | {ae_m / ae_p:.1f}x |")
    print(f"| classifier epoch (s) | {cl_p:.3f} | {cl_d:.3f} | {cl_d / cl_p:.1f}x | {cl_m:.3f} | {cl_m / cl_p:.1f}x |")
    n = len(att.victims.labels)
    print(f"\nattack own-decoder (n_iter {cfg.n_iter}, n_samples {cfg.n_samples}, n_best {cfg.n_best}, {n} victims "
          f"in one batch): {att.seconds:.1f} s, {att.victims_per_second:.3f} victims/s, "
          f"{att.queries / att.seconds:,.0f} scored images/s; mean iterations {att.iterations.mean():.0f}; "
          f"direct cosine {att.summary['direct_cosine']:.3f} vs label-only {att.summary['label_baseline_cosine']:.3f}")


if __name__ == "__main__":
    main()
