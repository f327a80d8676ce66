"""Privacy figures for the README: epsilon by accountant and microbatching, and leakage per attacker.

    .venv/bin/python benchmarks/bench_privacy.py [--victims 50] [--skip-ablation]

1. Epsilon of the training settings (whole model, both stages composed, delta 1e-5): PLD (the headline) and
   RDP, per-example clipping and 16 microbatches of 4 (sensitivity 2C, accounted at sigma / 2).
2. Three models on the embedded digits (defaults otherwise): no DP; DP autoencoder with a non-private
   classifier; DP on both stages. Each attacked by every registered attacker with `--victims` training
   members and as many held-out non-members: excess cosine over the label-only baseline with its bootstrap
   95% interval, members vs non-members, identification rate, speed.
3. Ablation of the public-prior attack on the plain model: iterations x reported estimate.
Prints markdown tables.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time
from pathlib import Path

from mnist_etc.audit.attacks.config import AttackConfig
from mnist_etc.config import DataConfig, TrainConfig
from mnist_etc.data import load_split
from mnist_etc.audit import attacks
from mnist_etc.dp.accounting import privacy_report
from mnist_etc.audit.attacks.runner import attack_model
from mnist_etc.training import train

MODELS = {
    "no DP": dict(),
    "DP autoencoder (sigma 1.1), plain classifier": dict(ae_noise_multiplier=1.1),
    "DP both stages (sigma 1.1)": dict(ae_noise_multiplier=1.1, clf_noise_multiplier=1.1),
}


def fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.2f}"


def epsilon_table(n_train: int) -> None:
    print("\n| settings (n = %d, batch 64, delta 1e-5) | PLD per example | RDP per example | PLD 16 microbatches "
          "| RDP 16 microbatches |" % n_train)
    print("| --- | --- | --- | --- | --- |")
    for sigma, ae, clf in ((1.1, 10, 20), (1.1, 30, 30), (0.9, 5, 15), (1.3, 5, 15), (2.0, 10, 20)):
        base = dict(ae_noise_multiplier=sigma, clf_noise_multiplier=sigma, ae_epochs=ae, clf_epochs=clf,
                    batch_size=64)
        per = privacy_report(TrainConfig(**base), n_train)
        mb = privacy_report(TrainConfig(**base, microbatches=16), n_train)
        print(f"| sigma {sigma}, {ae} + {clf} epochs | {fmt(per.epsilon)} | {fmt(per.epsilon_rdp)} | "
              f"{fmt(mb.epsilon)} | {fmt(mb.epsilon_rdp)} |")


def attack_row(model: str, eps: float, acc: float, r) -> str:
    s = r.summary
    return (f"| {model} | {fmt(eps)} | {acc:.3f} | {r.attack} | {s['excess_cosine']:+.3f} "
            f"[{s['excess_cosine_low']:+.3f}, {s['excess_cosine_high']:+.3f}] | {s['member_excess_cosine']:+.3f} | "
            f"{s['nonmember_excess_cosine']:+.3f} | {s['member_gap']:+.3f} [{s['member_gap_low']:+.3f}, "
            f"{s['member_gap_high']:+.3f}] | {s['direct_cosine']:.3f} / {s['label_baseline_cosine']:.3f} / "
            f"{s['prior_baseline_cosine']:.3f} | {s['identification_rate']:.2f} ({s['identification_chance']:.2f}) | "
            f"{s['class_match']:.2f} | {r.queries / r.seconds:,.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--victims", type=int, default=50, help="victims per group (default 50)")
    ap.add_argument("--skip-ablation", action="store_true")
    args = ap.parse_args()
    split = load_split(DataConfig())
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; {split.n_train} "
          f"training digits; attack: {args.victims} members + {args.victims} non-members")
    epsilon_table(split.n_train)
    cache = Path(tempfile.mkdtemp(prefix="bench-privacy-"))
    print("\n| model | epsilon | test acc | attacker | excess cosine [95%] | members | non-members | gap [95%] "
          "| cosine: attack / label-only / prior | identified (chance) | class match | images/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    trained = {}
    for model, kw in MODELS.items():
        t0 = time.perf_counter()
        result = train(TrainConfig(**kw), split, progress=False)
        trained[model] = result
        for name in attacks.names():
            cfg = AttackConfig(attack=name, victims=args.victims, n_iter=8, n_samples=128, n_best=32)
            r = attack_model(result.networks, split, cfg, progress=False, cache_dir=cache)
            print(attack_row(model, result.privacy.epsilon, result.metrics["test_accuracy"], r), flush=True)
        print(f"<!-- {model}: {time.perf_counter() - t0:.0f} s -->")
    if args.skip_ablation:
        return
    plain = trained["no DP"]
    print("\n| public-prior on the no-DP model: n_iter | estimate | excess cosine [95%] | identified | seconds |")
    print("| --- | --- | --- | --- | --- |")
    for n_iter in (1, 8, 32, 128):
        for estimate in ("elite-mean", "best"):
            cfg = AttackConfig(victims=args.victims, n_iter=n_iter, n_samples=128, n_best=32, estimate=estimate)
            r = attack_model(plain.networks, split, cfg, progress=False, cache_dir=cache)
            s = r.summary
            print(f"| {n_iter} | {estimate} | {s['excess_cosine']:+.3f} [{s['excess_cosine_low']:+.3f}, "
                  f"{s['excess_cosine_high']:+.3f}] | {s['identification_rate']:.2f} | {r.seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
