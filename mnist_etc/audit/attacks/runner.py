"""Run a registered attack on a model's scores and measure what it recovers beyond the label.

Victims are `victims` held-out non-members (see `public_data`) and, unless `members` is false, as many training
members (the member - non-member gap is an audit figure; a sweep attacks non-members only). For each victim the target's scores are the only thing the attack sees. The result holds
the reconstructions, two baselines (the label-only public class mean, the headline's reference; and the
attacker's prior decoded from random codes, the no-information floor) and the scores of all three.

    >>> result = attack_model(nets, split, AttackConfig(victims=8))          # public-prior by default
    >>> result.summary["excess_cosine"], result.summary["excess_cosine_low"]
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_etc.audit.attacks.config import AttackConfig
from mnist_etc.data import DataSplit
from mnist_etc.errors import UserError
from mnist_etc.models import Networks
from mnist_etc.audit import attacks
from mnist_etc.audit.attacks.base import AttackContext
from mnist_etc.audit.attacks.hill_climb import Score, compiled
from mnist_etc.audit.leakage import (bootstrap_difference, bootstrap_mean, identification_ranks,
                                       leakage_scores, summarise)
from mnist_etc.audit.public_data import PublicDigits, nonmember_pool, public_digits
from mnist_etc.audit.public_models import EVALUATOR, public_autoencoder


@dataclass
class Victims:
    x: np.ndarray             # [M + V, 28, 28, 1]: the M members (V or 0) first, then V non-members
    labels: np.ndarray        # true labels
    member: np.ndarray        # bool
    index: np.ndarray         # index into x_train (members) or x_test (non-members)


def choose_victims(split: DataSplit, n: int, seed: int, members: bool = True) -> Victims:
    pool = nonmember_pool(split)
    if n > split.n_train or n > len(pool):
        raise UserError(f"victims must not exceed the {min(split.n_train, len(pool))} digits available per group "
                        f"({split.n_train} training members, {len(pool)} held-out non-members), got {n}.")
    rng = np.random.default_rng(seed)
    drawn = np.sort(rng.choice(split.n_train, n, replace=False))   # drawn either way: non-members stay the same
    members = drawn if members else drawn[:0]
    non = np.sort(rng.choice(pool, n, replace=False))
    return Victims(np.concatenate([split.x_train[members], split.x_test[non]]),
                   np.concatenate([split.y_train[members], split.y_test[non]]),
                   np.repeat([True, False], [len(members), n]), np.concatenate([members, non]))


def check_attack_inputs(split: DataSplit, cfg: AttackConfig) -> PublicDigits:
    """Everything about the attack that can be refused before any training or server starts."""
    choose_victims(split, cfg.victims, cfg.seed, cfg.members)
    return public_digits(split, cfg.public_data)


@dataclass
class AttackResult:
    config: AttackConfig
    attack: str
    threat_model: str
    victims: Victims
    reconstructions: np.ndarray
    label_baseline_images: np.ndarray      # public class mean of the class the target predicts for each victim
    prior_baseline_images: np.ndarray      # the attacker's prior decoded from random codes
    scores: dict[str, np.ndarray]          # per victim, reconstruction vs victim (+ excess_cosine, rank)
    label_baseline_scores: dict[str, np.ndarray]
    summary: dict[str, float]              # flat figures for reports, MLflow and sweep objectives
    iterations: np.ndarray
    queries: int
    seconds: float

    @property
    def originals(self) -> np.ndarray:
        return self.victims.x

    @property
    def baseline(self) -> dict[str, float]:
        """Means of the label-only baseline's scores (the reference of the headline)."""
        return summarise(self.label_baseline_scores)

    @property
    def victims_per_second(self) -> float:
        return len(self.victims.labels) / self.seconds


def _group_figures(scores: dict[str, np.ndarray], member: np.ndarray, seed: int) -> dict[str, float]:
    out: dict[str, float] = {}
    excess = scores["excess_cosine"]
    out["excess_cosine"], out["excess_cosine_low"], out["excess_cosine_high"] = bootstrap_mean(excess, seed)
    groups = (("member", member), ("nonmember", ~member)) if member.any() else (("nonmember", ~member),)
    for group, mask in groups:
        out[f"{group}_excess_cosine"], out[f"{group}_excess_cosine_low"], out[f"{group}_excess_cosine_high"] = \
            bootstrap_mean(excess[mask], seed + 1)
        out[f"{group}_direct_cosine"] = float(np.mean(scores["direct_cosine"][mask]))
    if member.any():
        out["member_gap"], out["member_gap_low"], out["member_gap_high"] = \
            bootstrap_difference(excess[member], excess[~member], seed + 2)
    return out


def attack_model(nets: Networks | None, split: DataSplit, cfg: AttackConfig, progress: bool = True,
                 score: Score | None = None, cache_dir: Path | None = None) -> AttackResult:
    """Attack `cfg.victims` non-members (and as many members unless `cfg.members` is false); `score` defaults to
    the in-process target."""
    victims = choose_victims(split, cfg.victims, cfg.seed, cfg.members)
    public = public_digits(split, cfg.public_data)
    if score is None:
        if nets is None:
            raise UserError("attack_model needs the target's networks or a scoring function.")
        score = compiled(nets.full_model())
    kind = attacks.get(cfg.attack)
    attacker = kind.prepare(AttackContext(split, public, nets, cache_dir))
    target_logits = np.asarray(score(victims.x))
    t0 = time.perf_counter()
    climb = attacker.reconstruct(score, target_logits, cfg, progress)
    seconds = time.perf_counter() - t0

    images = climb.mean_images if cfg.estimate == "elite-mean" else climb.images
    predicted = target_logits.argmax(axis=1)
    label_images = public.class_means()[predicted]
    prior_images = attacker.prior_samples(len(victims.labels), cfg.seed + 1)
    evaluator = public_autoencoder(public, EVALUATOR, cache_dir)
    rec_classes = np.asarray(score(images)).argmax(axis=1)
    scores = leakage_scores(evaluator, victims.x, images, rec_classes == predicted)
    base = leakage_scores(evaluator, victims.x, label_images, np.ones(len(predicted), bool))
    prior = leakage_scores(evaluator, victims.x, prior_images,
                           np.asarray(score(prior_images)).argmax(axis=1) == predicted)
    scores["excess_cosine"] = scores["direct_cosine"] - base["direct_cosine"]
    ranks, k = identification_ranks(images, victims.x, victims.labels, public, seed=cfg.seed)
    scores["identification_rank"] = ranks.astype(np.float64)

    summary = {k_: v for k_, v in summarise(scores).items() if k_ not in ("excess_cosine", "identification_rank")}
    summary.update(_group_figures(scores, victims.member, cfg.seed))
    summary["label_baseline_cosine"] = float(base["direct_cosine"].mean())
    summary["prior_baseline_cosine"] = float(prior["direct_cosine"].mean())
    summary["identification_rate"] = float(np.mean(ranks == 1))
    summary["identification_chance"] = 1.0 / (k + 1)
    summary["victims_per_group"] = float(cfg.victims)
    return AttackResult(cfg, kind.name, kind.threat_model, victims, images, label_images, prior_images,
                        scores, base, summary, climb.iterations, climb.queries, seconds)
