"""Leakage scores of reconstructions, judged against what the label alone gives away.

Per victim (`leakage_scores`), all computed without the target's own networks:
- `direct_cosine`: cosine similarity of the pixel vectors;
- `perceptual_cosine_1`: cosine of the codes of both images under a fixed public evaluation encoder;
- `perceptual_cosine_2`: the same after one more decode/encode round trip of that evaluation autoencoder;
- `ssim`, `psnr` (dB, peak 1.0), `mse`; `class_match`: the target gives both images the same class.

The headline (`excess_cosine`) is the reconstruction's direct cosine minus that of the label-only baseline,
the public class-mean image of the class the target predicts for the victim: anyone who learns only the
label can draw that. Its mean comes with a bootstrap 95% interval (`bootstrap_mean`). The identification
rate asks whether the reconstruction picks the victim out of K public digits of the same class.
"""
from __future__ import annotations

import numpy as np

from mnist_etc.audit.public_data import PublicDigits
from mnist_etc.audit.public_models import PublicAutoencoder
from mnist_etc.tf_quiet import tf

LEAKAGE_METRICS = ("direct_cosine", "perceptual_cosine_1", "perceptual_cosine_2", "ssim", "psnr", "mse",
                   "class_match")
BOOTSTRAP_RESAMPLES = 2000
IDENTIFICATION_K = 50


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(denom, 1e-12)


def leakage_scores(evaluator: PublicAutoencoder, originals: np.ndarray, reconstructions: np.ndarray,
                   same_class: np.ndarray) -> dict[str, np.ndarray]:
    """Per-victim scores; `same_class[i]` says whether the target puts both images in one class."""
    z_o, z_r = evaluator.encode(originals), evaluator.encode(reconstructions)
    o = tf.constant(originals, tf.float32)
    r = tf.constant(np.clip(reconstructions, 0, 1), tf.float32)
    round_trip = lambda z: evaluator.encode(evaluator.decode(z))  # noqa: E731
    return {
        "direct_cosine": cosine_rows(originals, reconstructions),
        "perceptual_cosine_1": cosine_rows(z_o, z_r),
        "perceptual_cosine_2": cosine_rows(round_trip(z_o), round_trip(z_r)),
        "ssim": tf.image.ssim(o, r, max_val=1.0).numpy().astype(np.float64),
        "psnr": tf.image.psnr(o, r, max_val=1.0).numpy().astype(np.float64),
        "mse": np.mean((originals - reconstructions).reshape(len(originals), -1) ** 2, axis=1),
        "class_match": np.asarray(same_class, np.float64),
    }


def bootstrap_mean(values: np.ndarray, seed: int = 0,
                   resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float, float]:
    """Mean and its percentile-bootstrap 95% interval."""
    values = np.asarray(values, np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
    return float(values.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def bootstrap_difference(a: np.ndarray, b: np.ndarray, seed: int = 0,
                         resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float, float]:
    """mean(a) - mean(b) of two independent samples, with a percentile-bootstrap 95% interval."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    rng = np.random.default_rng(seed)
    diffs = (a[rng.integers(0, len(a), (resamples, len(a)))].mean(axis=1)
             - b[rng.integers(0, len(b), (resamples, len(b)))].mean(axis=1))
    return float(a.mean() - b.mean()), float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))


def identification_ranks(reconstructions: np.ndarray, victims: np.ndarray, labels: np.ndarray,
                         public: PublicDigits, k: int = IDENTIFICATION_K, seed: int = 0) -> tuple[np.ndarray, int]:
    """Rank of each victim (1 = most similar) among itself and K public digits of its class, by pixel cosine
    to its reconstruction; ties count against the victim. Returns the ranks and K (chance of rank 1: 1/(K+1))."""
    rng = np.random.default_rng(seed)
    k = int(min(k, min(np.sum(public.y == c) for c in range(10))))
    ranks = np.empty(len(victims), int)
    for i, (rec, victim, label) in enumerate(zip(reconstructions, victims, labels)):
        pool = public.x[rng.choice(np.flatnonzero(public.y == label), k, replace=False)]
        own = cosine_rows(rec[None], victim[None])[0]
        others = cosine_rows(np.repeat(rec[None], k, axis=0), pool)
        ranks[i] = 1 + int(np.sum(others >= own))
    return ranks, k


def summarise(scores: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(np.mean(v)) for k, v in scores.items()}
