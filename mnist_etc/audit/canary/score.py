"""Scoring the canaries from every step, and simulating what a correct implementation would show.

What the accountant claims of one example in one stage (`StageClaim`): over `steps` steps it is sampled with
probability q, and each step's output on its coordinate is N(c, sigma^2) (c = 1 when sampled, in units of C)
or N(0, sigma^2). The most powerful test of "in" against "out" (Neyman-Pearson) sums the per-step log
likelihood ratio log((1 - q) + q exp((x - 1/2) / sigma^2)) over steps and stages (`LikelihoodRatioScores`):
the statistic whose distribution the PLD accountant analyses. A non-private stage adds its gradient without
noise, so an included canary is seen exactly (score +inf).

`simulate` plays the claimed mechanism itself, with the same scorer, to plan the audit before it looks at
its own canaries: which number of guesses to make, what epsilon_lb a correct implementation reaches at this
number of canaries (the cap the audit can be held to), and whether noise mis-scaled 2x would be caught.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnist_etc.config import TrainConfig
from mnist_etc.dp.accounting import steps_per_epoch


@dataclass(frozen=True)
class StageClaim:
    stage: str
    q: float        # sampling probability per step
    sigma: float    # noise multiplier (0: non-private, each included example seen once per step exactly)
    steps: int      # DP steps, or epochs of a non-private stage


def claimed_stages(cfg: TrainConfig, n_train: int) -> list[StageClaim]:
    """One example's view of the two stages, as the training settings describe them."""
    q = min(1.0, cfg.batch_size / n_train)
    steps = steps_per_epoch(n_train, cfg.batch_size)
    out = []
    for stage, epochs, sigma in (("autoencoder", cfg.ae_epochs, cfg.ae_noise_multiplier),
                                 ("classifier", cfg.clf_epochs, cfg.clf_noise_multiplier)):
        out.append(StageClaim(stage, q, sigma, epochs * steps) if sigma > 0 else StageClaim(stage, 1.0, 0.0, epochs))
    return out


class LikelihoodRatioScores:
    """Each canary's summed log likelihood ratio of "in the training set" against "not", step by step."""

    def __init__(self, m: int, claims: list[StageClaim]):
        self.scores = np.zeros(m)
        self.claims = {c.stage: c for c in claims}
        self.steps = {c.stage: 0 for c in claims}

    def observe(self, stage: str, values: np.ndarray) -> None:
        claim = self.claims[stage]
        self.steps[stage] += 1
        if claim.sigma == 0:
            self.scores += np.where(values > 0, np.inf, 0.0)
            return
        with np.errstate(divide="ignore"):
            absent = np.log1p(-claim.q)   # -inf when every example is sampled every step
        self.scores += np.logaddexp(absent, np.log(claim.q) + (values - 0.5) / claim.sigma ** 2)


def simulate(claims: list[StageClaim], included: np.ndarray, rng: np.random.Generator,
             noise_scale: float = 1.0) -> np.ndarray:
    """The scores of the claimed mechanism itself (noise actually `noise_scale` x the claimed one)."""
    scorer = LikelihoodRatioScores(len(included), claims)
    m = len(included)
    for claim in claims:
        for _ in range(claim.steps):
            if claim.sigma == 0:
                scorer.observe(claim.stage, included.astype(float))
                continue
            sampled = included & (rng.random(m) < claim.q)
            scorer.observe(claim.stage, sampled + claim.sigma * noise_scale * rng.standard_normal(m))
    return scorer.scores
