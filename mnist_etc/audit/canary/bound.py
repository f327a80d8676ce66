"""One-run epsilon lower bounds from the canaries' guesses.

m canaries are each included in training independently with probability 1/2. After one training run the
auditor guesses "in" for the k_in highest-scoring canaries and "out" for the k_out lowest (r guesses, abstaining
on the rest) and gets v of them right. k_in and k_out are fixed before the canaries' inclusion is looked at
(`mnist_etc.audit.canary.audit` plans them on a simulation of the claimed mechanism), so no correction for
choosing them is owed. Two bounds at the audit's confidence:

- Steinke, Nasr and Jagielski, "Privacy Auditing with One (1) Training Run" (NeurIPS 2023), Theorem 3
  (`epsilon_lower_bound`): if training is (epsilon, delta)-DP, the number of correct guesses is dominated, up
  to a delta term of 2 m delta, by Binomial(r, e^eps / (1 + e^eps));
- Mahloujifar, Melis, Chaudhuri, "Auditing f-Differential Privacy in One Run" (ICML 2025) applied to the
  trade-off curve of (epsilon, delta)-DP (`fdp_epsilon_lower_bound`): the largest epsilon whose curve
  f_{eps,delta} the observation rejects (`mnist_etc.audit.bounds.one_run_fdp_rejects`). An
  (epsilon, delta)-DP mechanism is f_{eps,delta}-DP, so this is an epsilon lower bound with no Gaussian
  assumption, and it handles delta inside the curve instead of paying 2 m delta, which matters with many
  canaries. It is the audit's `epsilon_lb`; Steinke's stands beside it.
The observation is also held against the accounted trade-off curve itself (`rejects_curve`): the sharpest
test of the claim, since it uses the whole privacy profile rather than one (epsilon, delta) point.
"""
from __future__ import annotations

import math
import numpy as np
from scipy import stats

from mnist_etc.audit.bounds import one_run_fdp_rejects



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


def fdp_epsilon_lower_bound(m: int, r: int, v: int, delta: float, confidence: float,
                            tolerance: float = 1e-3) -> float:
    """The largest epsilon (to `tolerance`, rounded down) whose (epsilon, delta)-DP curve v correct of r
    guesses on m canaries reject at `confidence` (0 when none is rejected)."""
    def rejects(eps: float) -> bool:
        return one_run_fdp_rejects(m, r, v, confidence, eps_delta_inverse_blow_up(eps, delta))

    if r == 0 or v == 0 or not rejects(0.0):
        return 0.0
    lo, hi = 0.0, 1.0
    while rejects(hi):
        lo, hi = hi, hi * 2
        if hi > 1e3:
            return lo
    while hi - lo > tolerance:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if rejects(mid) else (lo, mid)
    return lo


def eps_delta_inverse_blow_up(eps: float, delta: float):
    """b^-1 of (eps, delta)-DP, b(x) = min(1, delta + e^eps x, 1 - e^-eps (1 - delta - x)): the sup of x with
    b(x) <= y (as `mnist_etc.audit.bounds.TradeOffCurve.inverse_blow_up` for one point, in plain floats: the
    one-run recursion calls it once per correct guess)."""
    grow, shrink = math.exp(eps), math.exp(-eps)

    def inverse(y: float) -> float:
        if y >= 1.0:
            return 1.0
        return min(1.0, max(0.0, (y - delta) * shrink, 1.0 - delta - grow * (1.0 - y)))
    return inverse


def guesses(scores: np.ndarray, included: np.ndarray, k_in: int, k_out: int | None = None) -> tuple[int, int]:
    """(r, v): "in" for the k_in highest scores, "out" for the k_out lowest (default k_out = k_in; ties broken by
    position, which carries no information about inclusion); how many of the r guesses are right."""
    scores, included = np.asarray(scores, float), np.asarray(included, bool)
    k_in = min(int(k_in), len(scores) // 2)
    k_out = k_in if k_out is None else min(int(k_out), len(scores) // 2)
    order = np.argsort(scores, kind="stable")
    right = included[order[len(order) - k_in:]].sum() if k_in else 0
    return k_in + k_out, int(right + (~included[order[:k_out]]).sum())


def rejects_curve(m: int, r: int, v: int, confidence: float, curve) -> bool:
    """Whether the observation rejects the trade-off curve `curve` (a `TradeOffCurve`; None: not private, which
    nothing rejects)."""
    if curve is None or v == 0:
        return False
    return one_run_fdp_rejects(m, r, v, confidence, curve.inverse_blow_up)
