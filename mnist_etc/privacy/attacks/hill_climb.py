"""Bayesian hill climbing (Galbally et al., Pattern Recognition 2010) against the classifier's scores.

The attacker knows the decoder and a Gaussian prior of hidden codes (per-dimension mean and variance over
the training codes) and sees only the classifier's scores (logits) for each victim image. Each iteration
samples `n_samples` codes per victim from the current Gaussian, decodes and scores them, keeps the
`n_best` whose scores are closest to the victim's (L2 distance of log-softmax vectors), and moves the
mean and variance by `lr` towards those of the best samples. A victim stops when its mean variance falls
below `eps` or goes NaN; the attack stops when all have, or after `n_iter` iterations.

All victims are attacked at once: one [victims * n_samples, hid_dim] tensor per iteration.

    >>> result = attack_model(nets, split, AttackConfig(victims=8))
    >>> result.summary["direct_cosine"], result.baseline["direct_cosine"]
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from mnist_etc.config import AttackConfig
from mnist_etc.data import DataSplit
from mnist_etc.errors import UserError
from mnist_etc.privacy.metrics import leakage_scores, summarise
from mnist_etc.models import Networks
from mnist_etc.tf_quiet import tf

# codes [M, hid_dim] -> images [M, 28, 28, 1]: the attacker's own copy of the decoder.
Decode = Callable[[np.ndarray], np.ndarray]
# images [M, 28, 28, 1] -> logits [M, 10]: the victim's model, in-process or served (Triton).
Score = Callable[[np.ndarray], np.ndarray]


@dataclass
class ClimbResult:
    codes: np.ndarray          # [V, hid_dim] best code found per victim
    images: np.ndarray         # [V, 28, 28, 1] its decoded image (the reconstruction)
    distance: np.ndarray       # [V] score distance of that image to the victim's scores
    iterations: np.ndarray     # [V] iterations each victim ran
    queries: int               # images scored in all


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def hill_climb(decode: Decode, score: Score, target_logits: np.ndarray, prior_mean: np.ndarray,
               prior_var: np.ndarray, cfg: AttackConfig, progress: bool = True) -> ClimbResult:
    v, h = len(target_logits), len(prior_mean)
    rng = np.random.default_rng(cfg.seed)
    target = log_softmax(np.asarray(target_logits, np.float64))[:, None, :]          # [V, 1, 10]
    mean = np.tile(prior_mean.astype(np.float64), (v, 1))                              # [V, h]
    var = np.tile(prior_var.astype(np.float64), (v, 1))
    active = np.ones(v, bool)
    iterations = np.zeros(v, int)
    best_code = mean.copy()
    best_dist = np.full(v, np.inf)
    best_img = np.zeros((v, 28, 28, 1), np.float32)
    queries = 0
    bar = tqdm(total=cfg.n_iter, desc="hill climbing", unit="it", disable=not progress, leave=True)
    for _ in range(cfg.n_iter):
        idx = np.flatnonzero(active)
        k = len(idx)
        codes = mean[idx, None, :] + np.sqrt(var[idx, None, :]) * rng.standard_normal((k, cfg.n_samples, h))
        images = decode(codes.reshape(k * cfg.n_samples, h).astype(np.float32))
        logits = score(images)
        queries += k * cfg.n_samples
        dist = np.sum((log_softmax(np.asarray(logits, np.float64)).reshape(k, cfg.n_samples, -1)
                       - target[idx]) ** 2, axis=-1)                                     # [k, S]
        all_nan = np.all(np.isnan(dist), axis=1)
        dist = np.where(np.isnan(dist), np.inf, dist)  # a NaN score never counts as close
        order = np.argsort(dist, axis=1)[:, : cfg.n_best]
        best = np.take_along_axis(codes, order[..., None], axis=1)                      # [k, n_best, h]
        top = order[:, 0]
        improved = dist[np.arange(k), top] < best_dist[idx]
        rows = idx[improved]
        best_dist[rows] = dist[np.arange(k), top][improved]
        best_code[rows] = codes[np.arange(k), top][improved]
        best_img[rows] = np.asarray(images).reshape(k, cfg.n_samples, 28, 28, 1)[np.arange(k), top][improved]
        mean[idx] = (1 - cfg.lr) * mean[idx] + cfg.lr * best.mean(axis=1)
        var[idx] = (1 - cfg.lr) * var[idx] + cfg.lr * best.var(axis=1)
        iterations[idx] += 1
        mean_var = var[idx].mean(axis=1)
        stop = all_nan | ~np.isfinite(mean_var) | ~np.all(np.isfinite(mean[idx]), axis=1) | (mean_var < cfg.eps)
        active[idx[stop]] = False
        bar.update(1)
        bar.set_postfix(active=int(active.sum()), distance=f"{np.mean(best_dist):.3g}")
        if not active.any():
            break
    bar.close()
    return ClimbResult(best_code.astype(np.float32), best_img, best_dist, iterations, queries)


def _compiled(model: tf.keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    run = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return lambda x: run(tf.constant(x, tf.float32)).numpy()


def in_process_decoder(nets: Networks) -> Decode:
    return _compiled(nets.decoder)


def in_process_scorer(nets: Networks) -> Score:
    return _compiled(nets.full_model())


def code_prior(nets: Networks, x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The attacker's Gaussian prior: per-dimension mean and variance of the training codes."""
    z = nets.encoder.predict(x_train, batch_size=1024, verbose=0)
    return z.mean(axis=0), z.var(axis=0) + 1e-8


def choose_victims(split: DataSplit, n: int, seed: int) -> np.ndarray:
    if n > len(split.y_test):
        raise UserError(f"victims must not exceed the {len(split.y_test)} test images, got {n}.")
    return np.sort(np.random.default_rng(seed).choice(len(split.y_test), size=n, replace=False))


@dataclass
class AttackResult:
    config: AttackConfig
    victim_indices: np.ndarray
    originals: np.ndarray
    reconstructions: np.ndarray
    baseline_images: np.ndarray
    scores: dict[str, np.ndarray]            # per victim
    summary: dict[str, float]                # means over victims
    baseline: dict[str, float]               # means of random prior codes, the no-information reference
    iterations: np.ndarray
    queries: int
    seconds: float

    @property
    def victims_per_second(self) -> float:
        return len(self.victim_indices) / self.seconds


def attack_model(nets: Networks, split: DataSplit, cfg: AttackConfig, progress: bool = True,
                 score: Score | None = None) -> AttackResult:
    """Attack `cfg.victims` test images; `score` (the victim's model) defaults to the in-process one."""
    idx = choose_victims(split, cfg.victims, cfg.seed)
    originals = split.x_test[idx]
    prior_mean, prior_var = code_prior(nets, split.x_train)
    score = score or in_process_scorer(nets)
    t0 = time.perf_counter()
    climb = hill_climb(in_process_decoder(nets), score, score(originals), prior_mean, prior_var, cfg, progress)
    seconds = time.perf_counter() - t0
    rng = np.random.default_rng(cfg.seed + 1)
    random_codes = (prior_mean + np.sqrt(prior_var) * rng.standard_normal((len(idx), len(prior_mean))))
    baseline_images = nets.decoder(random_codes.astype(np.float32), training=False).numpy()
    scores = leakage_scores(nets, originals, climb.images)
    return AttackResult(cfg, idx, originals, climb.images, baseline_images, scores, summarise(scores),
                        summarise(leakage_scores(nets, originals, baseline_images)), climb.iterations,
                        climb.queries, seconds)

