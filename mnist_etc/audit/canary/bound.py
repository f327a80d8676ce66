"""The one-run epsilon lower bound of Steinke, Nasr and Jagielski, "Privacy Auditing with One (1) Training Run"
(NeurIPS 2023), Theorem 3 (approximate DP).

m canaries are each included in training independently with probability 1/2. After one training run the
auditor guesses "in" for some canaries and "out" for others (r guesses in all, abstaining on the rest) and
gets v of them right. If training is (epsilon, delta)-DP, the number of correct guesses is stochastically
dominated, up to a delta term, by Binomial(r, e^eps / (1 + e^eps)): each guess is at best as good as
randomised response. So v correct guesses reject every epsilon whose p-value falls below 1 - confidence;
the largest such epsilon is the lower bound `epsilon_lb`.

The bound holds for any guessing rule fixed before the canaries' inclusion is looked at. We guess on a small
grid of guess counts (the k most confident "in" and k most confident "out" for each k) and take the best,
with a Bonferroni correction over the grid, so choosing the best k costs confidence, not validity.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

GUESS_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)   # k = fraction x m guesses "in" and as many "out"


def p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """P[at least v of r guesses correct] for an (eps, delta)-DP mechanism (the paper's Theorem 3)."""
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    q = 1.0 / (1.0 + math.exp(-eps))   # the accuracy of eps-DP randomised response
    beta = float(stats.binom.sf(v - 1, r, q))   # P[Binomial(r, q) >= v]
    if delta == 0 or v == 0:
        return min(beta, 1.0)
    # alpha = max_i P[v - i <= Binomial(r, q) < v] / i
    i = np.arange(1, v + 1)
    window = stats.binom.cdf(v - 1, r, q) - stats.binom.cdf(v - i - 1, r, q)
    alpha = float(np.max(window / i))
    return min(beta + alpha * delta * 2 * m, 1.0)


def epsilon_lower_bound(m: int, r: int, v: int, delta: float, confidence: float) -> float:
    """The largest epsilon that v correct of r guesses reject at this confidence (0 when none is rejected)."""
    significance = 1.0 - confidence
    if r == 0 or p_value(m, r, v, 0.0, delta) >= significance:
        return 0.0
    lo, hi = 0.0, 1.0
    while p_value(m, r, v, hi, delta) < significance:
        lo, hi = hi, hi * 2
        if hi > 1e3:
            return lo
    for _ in range(50):
        mid = (lo + hi) / 2
        if p_value(m, r, v, mid, delta) < significance:
            lo = mid
        else:
            hi = mid
    return lo


@dataclass(frozen=True)
class OneRunBound:
    epsilon_lb: float       # rejected with `confidence`: training is not (epsilon_lb, delta)-DP
    confidence: float
    delta: float
    canaries: int           # m
    guesses: int            # r of the chosen k (k "in" + k "out")
    correct: int            # v
    per_guess_count: dict[int, tuple[int, float]]   # r -> (v, epsilon_lb at the corrected confidence)

    def as_dict(self) -> dict:
        return {"epsilon_lb": self.epsilon_lb, "confidence": self.confidence, "delta": self.delta,
                "canaries": self.canaries, "guesses": self.guesses, "correct": self.correct,
                "grid": {str(r): {"correct": v, "epsilon_lb": e} for r, (v, e) in self.per_guess_count.items()}}


def guess_counts(m: int) -> list[int]:
    """k per side for each grid fraction, distinct, at least 1, at most m // 2."""
    return sorted({min(m // 2, max(1, int(round(f * m)))) for f in GUESS_FRACTIONS})


def one_run_bound(scores: np.ndarray, included: np.ndarray, delta: float, confidence: float) -> OneRunBound:
    """Guess "in" for the k highest scores and "out" for the k lowest, for each k of the grid; the bound of the
    best k at confidence corrected for the grid's size (Bonferroni)."""
    scores, included = np.asarray(scores, float), np.asarray(included, bool)
    m = len(scores)
    ks = guess_counts(m)
    corrected = 1.0 - (1.0 - confidence) / len(ks)
    order = np.argsort(scores, kind="stable")
    grid: dict[int, tuple[int, float]] = {}
    for k in ks:
        v = int(included[order[-k:]].sum() + (~included[order[:k]]).sum())
        grid[2 * k] = (v, epsilon_lower_bound(m, 2 * k, v, delta, corrected))
    r, (v, eps) = max(grid.items(), key=lambda item: (item[1][1], -item[0]))
    return OneRunBound(eps, confidence, delta, m, r, v, grid)
