"""Core figures: autoencoder and classifier epoch times (plain vs DP-SGD), attack speed, peak memory.

    .venv/bin/python benchmarks/bench_core.py [--victims 8] [--n-iter 1024] [--skip-memory]   # victims per group

Epoch times are medians over epochs after the first (which includes tracing). The attack runs the course
project's settings (n_iter 1024, 256 samples, 64 best) in process; a shorter climb compares this release's
ONNX Runtime program with the previous release's TensorFlow program on the same victims and seed. Peak RSS is measured in child processes: a
DP training of 2, 4 and 8 epochs per stage, an attack of 64 victims of 8, 16 and 64 iterations; memory that
grew with epochs or iterations would show as a difference. Each child reports its own VmHWM. Prints markdown tables.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys

import time

import numpy as np

from mnist_etc.audit.attacks.config import AttackConfig
from mnist_etc.config import DataConfig, TrainConfig
from mnist_etc.data import load_split
from mnist_etc.models import Networks
from mnist_etc.dp.accounting import steps_per_epoch
from mnist_etc.audit.attacks.hill_climb import hill_climb
from mnist_etc.audit.attacks.in_process import InProcess, fused
from mnist_etc.keras_onnx import CHUNK, OnnxProgram
from mnist_etc.audit.attacks.runner import attack_model
from mnist_etc.dp.sgd import DPSGD, mse_per_example
from mnist_etc.tf_quiet import tf
from mnist_etc.training import train


def median_epoch(rows: list[dict[str, float]]) -> float:
    return statistics.median(r["epoch_seconds"] for r in rows[1:] or rows)


_CHILD = """
import sys
from mnist_etc.audit.attacks.config import AttackConfig
from mnist_etc.config import DataConfig, TrainConfig
from mnist_etc.data import load_split
split = load_split(DataConfig())
what, n = sys.argv[1], int(sys.argv[2])
if what == "train":
    from mnist_etc.training import train
    train(TrainConfig(ae_epochs=n, clf_epochs=n, ae_noise_multiplier=1.0, clf_noise_multiplier=1.0), split,
          progress=False)
else:
    from mnist_etc.models import Networks
    from mnist_etc.audit.attacks.runner import attack_model
    nets = Networks.build(32)   # untrained: no training peak to hide the attack's (its memory does not depend on weights)
    attack_model(nets, split, AttackConfig(attack="own-decoder", victims=32, n_iter=n, n_samples=256, n_best=64,
                                           eps=1e-30), progress=False)
# VmHWM, the peak of this process's own memory. Not getrusage's ru_maxrss: Linux carries the parent's peak
# into it across a vfork + exec, so every child reported the benchmark's own peak (1,529 MiB twice, once).
print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")))
"""


def dp_autoencoder_epoch(split, path: str, epochs: int = 3) -> float:
    """Median seconds of a DP-SGD autoencoder epoch (noise 1.0, batch 64) on one clipping path, no validation."""
    tf.keras.utils.set_random_seed(0)
    nets = Networks.build(32)
    ae = tf.keras.Sequential([nets.encoder, nets.decoder])
    ae(split.x_val[:1])
    dp = DPSGD(ae, mse_per_example, tf.keras.optimizers.Adam(2e-3), 1.0, 1.0, 64, None, np.random.default_rng(0),
               path=path)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for _ in range(steps_per_epoch(split.n_train, 64)):
            dp.step(split.x_train, split.x_train)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def attack_rate(nets, split, cfg: AttackConfig, backend: str) -> tuple[float, np.ndarray]:
    """Scored images/s of the own-decoder hill climb on the first victims, decoding and scoring as one
    TensorFlow program (backend "tensorflow": the previous release's loop) or one ONNX Runtime program
    ("auto": this release's); and the distances found."""
    z = nets.encoder.predict(split.x_train, batch_size=1024, verbose=0)
    decode, score = InProcess(nets.decoder, backend=backend), InProcess(nets.full_model(), backend=backend)
    victims = split.x_train[: 2 * cfg.victims]
    target = InProcess(nets.full_model(), backend="tensorflow")(victims)
    t0 = time.perf_counter()
    res = hill_climb(decode, score, target, z.mean(axis=0), z.var(axis=0) + 1e-8, cfg, progress=False)
    return res.queries / (time.perf_counter() - t0), res.distance


def program_rates(nets, n: int = 4096, repeats: int = 10) -> list[tuple[str, float]]:
    """Candidates decoded and scored per second by the program alone (no hill climbing), `n` per call: where
    the attack's speed comes from, step by step, in one run."""
    z = np.random.default_rng(0).standard_normal((n, nets.decoder.input_shape[-1])).astype(np.float32)
    tf_program = fused(InProcess(nets.decoder, backend="tensorflow"), InProcess(nets.full_model(), backend="tensorflow"))
    models = [nets.decoder, nets.full_model()]
    variants = [
        ("TensorFlow, sub-pixel transposed convs, one program, the whole batch (previous release)", tf_program),
        ("ONNX Runtime, our channels-first graph with ConvTranspose, the whole batch",
         OnnxProgram(models, chunk=n, phases=False)),
        (f"ONNX Runtime, same graph, chunks of {CHUNK} on every core", OnnxProgram(models, phases=False)),
        (f"ONNX Runtime, transposed convs as phase convolutions, chunks of {CHUNK} (this release)",
         OnnxProgram(models)),
    ]
    out = []
    for name, run in variants:
        run(z)
        t0 = time.perf_counter()
        for _ in range(repeats):
            run(z)
        out.append((name, n * repeats / (time.perf_counter() - t0)))
    return out


def peak_rss_mib(what: str, n: int) -> float:
    out = subprocess.run([sys.executable, "-c", _CHILD, what, str(n)], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--victims", type=int, default=8)
    ap.add_argument("--n-iter", type=int, default=1024)
    ap.add_argument("--skip-memory", action="store_true")
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
    ae_ref = dp_autoencoder_epoch(split, "vectorised")
    ae_fast = dp_autoencoder_epoch(split, "layerwise")
    ae_reg = dp_autoencoder_epoch(split, "registry")
    print(f"\nDP-SGD autoencoder epoch by clipping path, same run (no validation): per-example backprop "
          f"(vectorised, before) {ae_ref:.2f} s = {ae_ref / ae_p:.1f}x plain; layerwise (now) {ae_fast:.2f} s = "
          f"{ae_fast / ae_p:.1f}x plain; tensorflow-privacy fast clipping with our Conv2D / Conv2DTranspose "
          f"registry functions (registry) {ae_reg:.2f} s = {ae_reg / ae_p:.1f}x plain")
    quick = AttackConfig(attack="own-decoder", victims=args.victims, n_iter=min(args.n_iter, 128), n_samples=256,
                         n_best=64)
    ref_rate, ref_dist = attack_rate(plain.networks, split, quick, backend="tensorflow")
    fast_rate, fast_dist = attack_rate(plain.networks, split, quick, backend="auto")
    rel = np.abs(fast_dist - ref_dist) / np.maximum(ref_dist, 1e-12)
    print(f"attack inner loop, same run, {2 * args.victims} victims x {quick.n_iter} iterations: one TensorFlow "
          f"program (before) {ref_rate:,.0f} images/s; one ONNX Runtime program (now) {fast_rate:,.0f} images/s "
          f"({fast_rate / ref_rate:.2f}x); same seed: mean best distance {ref_dist.mean():.5f} vs "
          f"{fast_dist.mean():.5f}, per victim relative difference median {np.median(rel):.1e}, max {rel.max():.1e}")
    print("\n| program alone, 4,096 candidates per call | images/s |\n| --- | --- |")
    for name, rate in program_rates(plain.networks):
        print(f"| {name} | {rate:,.0f} |")
    print(f"\nattack own-decoder (n_iter {cfg.n_iter}, n_samples {cfg.n_samples}, n_best {cfg.n_best}, {n} victims "
          f"in one batch): {att.seconds:.1f} s, {att.victims_per_second:.3f} victims/s, "
          f"{att.queries / att.seconds:,.0f} scored images/s; mean iterations {att.iterations.mean():.0f}; "
          f"direct cosine {att.summary['direct_cosine']:.3f} vs label-only {att.summary['label_baseline_cosine']:.3f}")
    if not args.skip_memory:
        print("\n| peak RSS (MiB, each child's VmHWM) | short | long | longer |")
        print("| --- | --- | --- | --- |")
        print("| DP training (both stages, noise 1.0): 2 / 4 / 8 epochs per stage | "
              + " | ".join(f"{peak_rss_mib('train', n):,.0f}" for n in (2, 4, 8)) + " |")
        print("| own-decoder attack, 64 victims (32 + 32) x 256 samples: 8 / 16 / 64 iterations | "
              + " | ".join(f"{peak_rss_mib('attack', n):,.0f}" for n in (8, 16, 64)) + " |")

if __name__ == "__main__":
    main()
