"""Bayesian hill climbing (Galbally et al., Pattern Recognition 2010): the search every attack here runs.

The attacker has a decoder (codes -> images) and a Gaussian prior of codes, and sees only the target's
scores (logits) for each victim image. Each iteration samples `n_samples` codes per victim from the current
Gaussian, decodes them, has the target score them, keeps the `n_best` whose scores are closest to the
victim's (L2 distance of log-softmax vectors) and moves the Gaussian towards them with the course
project's moment-matched update: the new Gaussian has the mean and variance of the mixture
`(1 - lr) * N(mean, var) + lr * N(mean_best, var_best)`, so

    mean <- (1 - lr) mean + lr mean_best
    var  <- (1 - lr) var + lr var_best + lr (1 - lr) (mean_best - mean)^2

A victim stops when its *largest* per-dimension variance falls below `eps` (every direction has
converged) or its scores go NaN; the search stops when all have, or after `n_iter` iterations.

All victims are searched at once: one [victims * n_samples, hid_dim] tensor per iteration. When decoder and
target are both in process (`compiled`), decoding and scoring run as one program (`in_process.fused`: ONNX
Runtime, in cache-sized chunks on every core) and only the scores come back. Images are decoded once, at the
end: each victim's best code and the last iteration's `n_best` codes it kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from mnist_etc.audit.attacks.config import AttackConfig
from mnist_etc.audit.attacks.in_process import InProcess, fused
from mnist_etc.tf_quiet import tf

# codes [M, hid_dim] -> images [M, 28, 28, 1]: the attacker's decoder.
Decode = Callable[[np.ndarray], np.ndarray]
# images [M, 28, 28, 1] -> logits [M, 10]: the target model, in-process or served (Triton).
Score = Callable[[np.ndarray], np.ndarray]


@dataclass
class ClimbResult:
    codes: np.ndarray          # [V, hid_dim] best code found per victim
    images: np.ndarray         # [V, 28, 28, 1] its decoded image (the reconstruction)
    distance: np.ndarray       # [V] score distance of that image to the victim's scores
    mean_images: np.ndarray    # [V, 28, 28, 1] mean of the last iteration's n_best decoded candidates
    iterations: np.ndarray     # [V] iterations each victim ran
    queries: int               # images scored in all


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def hill_climb(decode: Decode, score: Score, target_logits: np.ndarray, prior_mean: np.ndarray,
               prior_var: np.ndarray, cfg: AttackConfig, progress: bool = True) -> ClimbResult:
    v, h = len(target_logits), np.shape(prior_mean)[-1]
    rng = np.random.default_rng(cfg.seed)
    target = log_softmax(np.asarray(target_logits, np.float64))[:, None, :]          # [V, 1, 10]
    # One prior for all victims ([h]) or one per victim ([V, h]).
    mean = np.broadcast_to(np.asarray(prior_mean, np.float64), (v, h)).copy()          # [V, h]
    var = np.broadcast_to(np.asarray(prior_var, np.float64), (v, h)).copy()
    active = np.ones(v, bool)
    iterations = np.zeros(v, int)
    best_code = mean.copy()
    best_dist = np.full(v, np.inf)
    elite = np.broadcast_to(mean[:, None, :], (v, cfg.n_best, h)).copy()             # last kept codes
    queries = 0
    lr = cfg.lr
    if isinstance(decode, InProcess) and isinstance(score, InProcess):
        decode_and_score = fused(decode, score)
    else:
        def decode_and_score(z):
            return score(decode(z))
    bar = tqdm(total=cfg.n_iter, desc="hill climbing", unit="it", disable=not progress, leave=True)
    for _ in range(cfg.n_iter):
        idx = np.flatnonzero(active)
        k = len(idx)
        codes = mean[idx, None, :] + np.sqrt(var[idx, None, :]) * rng.standard_normal((k, cfg.n_samples, h))
        logits = decode_and_score(codes.reshape(k * cfg.n_samples, h).astype(np.float32))
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
        elite[idx] = best
        best_mean, best_var = best.mean(axis=1), best.var(axis=1)
        var[idx] = (1 - lr) * var[idx] + lr * best_var + lr * (1 - lr) * (best_mean - mean[idx]) ** 2
        mean[idx] = (1 - lr) * mean[idx] + lr * best_mean
        iterations[idx] += 1
        max_var = var[idx].max(axis=1)
        stop = all_nan | ~np.isfinite(max_var) | ~np.all(np.isfinite(mean[idx]), axis=1) | (max_var < cfg.eps)
        active[idx[stop]] = False
        bar.update(1)
        bar.set_postfix(active=int(active.sum()), distance=f"{np.mean(best_dist):.3g}")
        if not active.any():
            break
    bar.close()
    best_code = best_code.astype(np.float32)
    best_img = np.asarray(decode(best_code), np.float32)
    mean_img = np.asarray(decode(elite.reshape(v * cfg.n_best, h).astype(np.float32)), np.float32)
    mean_img = mean_img.reshape(v, cfg.n_best, 28, 28, 1).mean(axis=1)
    return ClimbResult(best_code, best_img, best_dist, mean_img, iterations, queries)


def decode_prior_samples(decode: Decode, prior_mean: np.ndarray, prior_var: np.ndarray, n: int,
                         seed: int) -> np.ndarray:
    """Images decoded from `n` codes drawn from the Gaussian prior: the no-information floor of an attacker."""
    z = prior_mean + np.sqrt(prior_var) * np.random.default_rng(seed).standard_normal((n, len(prior_mean)))
    return decode(z.astype(np.float32))


def compiled(model: tf.keras.Model) -> InProcess:
    """The model as an in-process `Decode` / `Score` (numpy in, numpy out)."""
    return InProcess(model)
