"""Privacy of a hyperparameter search that releases only its best trial (Papernot and Steinke, ICLR 2022).

Today a released model's epsilon covers its own training only; the search that picked it also looked at the
data. This module bounds the whole search: run K trials, K drawn at random, and release only the best one,
with its score. The bound is in Renyi DP (RDP) and is converted to (epsilon, delta) the way dp_accounting's
RdpAccountant does. Pure math: numpy, scipy and dp_accounting, no TensorFlow.

How to call it: give the DpEvents of every candidate trial the search can draw (or their RDP curves), the
distribution of the number of trials, and delta::

    >>> import dp_accounting
    >>> from mnist_etc.dp.private_selection import TruncatedNegativeBinomial, account_search
    >>> trial = dp_accounting.GaussianDpEvent(noise_multiplier=4.0)
    >>> search = account_search([trial], TruncatedNegativeBinomial.with_mean(8, eta=1.0), delta=1e-5)
    >>> search.epsilon_one_trial < search.epsilon_search < search.epsilon_composed_fixed
    True
    >>> round(search.epsilon_search, 2), round(search.epsilon_composed_fixed, 2)
    (2.09, 3.19)

The theorems (arXiv:2110.03620v2, the ICLR 2022 version). A trial Q is one run of a randomized algorithm whose
output (model, score) comes from a totally ordered set (ordered by the score). A draws K from a distribution,
runs Q K times independently and returns the best output (nothing if K = 0).

* Theorem 2 (p. 5), K ~ truncated negative binomial D_{eta,gamma} (Definition 1), eta > -1, 0 < gamma < 1:
  if Q is (lambda, eps)-RDP and (lambda_hat, eps_hat)-RDP, with lambda > 1 and lambda_hat >= 1, then A is
  (lambda, eps')-RDP with
  eps' = eps + (1 + eta) (1 - 1/lambda_hat) eps_hat + (1 + eta) log(1/gamma) / lambda_hat + log(E[K]) / (lambda - 1).
  eta = 1 is the geometric distribution, eta -> 0 the logarithmic one. Corollary 3: if Q is eps-DP, A is
  ((2 + eta) eps)-DP (eta = 1 gives Liu and Talwar's 3 eps).
* Theorem 6 (p. 7), K ~ Poisson(mu): if Q is (lambda, eps)-RDP and (eps_hat, delta_hat)-DP with
  exp(eps_hat) <= 1 + 1/(lambda - 1), then A is (lambda, eps + mu delta_hat + log(mu) / (lambda - 1))-RDP.

What the theorems assume, so what a caller must do:

* Independent repetitions of ONE randomized algorithm. Each trial draws its hyperparameters afresh from a
  distribution fixed before the search and independent of the data and of earlier trials (random search).
  Such a trial is a mixture of the candidate trainings, and its RDP is at most the worst candidate's
  (`worst_case_rdp`). The curves given must therefore cover every candidate the sampler can draw (the whole
  search space, or a corner that dominates it, e.g. least noise, most epochs, largest batch), not only the
  candidates that happened to be drawn: a space that admits noise 0 has an infinite epsilon.
* K is drawn from the stated distribution, and the search runs exactly K trials: no stopping, retrying or
  redrawing that depends on results (a failed trial is an output with the worst score, not a reason to draw
  again). With Poisson K, K = 0 releases nothing.
* Only the best trial (model, hyperparameters, score) is released. K, the other trials, their scores, plots
  of them and the order of the trials are not. The randomness of K, of the hyperparameter draws and of the
  DP noise is secret (a published sampler seed makes the trials a fixed, known sequence, which the theorems
  do not analyse).
* The score that ranks trials is part of the trial's DP output: computed from the DP-trained model on data
  outside the protected set (those examples are then not protected), or itself computed with DP. A score
  computed from the protected training examples (e.g. a membership attack on the training members) breaks
  the bound. The ranking is a total order fixed in advance (ties broken by a fixed rule).

What the theorems do NOT cover: adaptive search. Optuna's TPE (its first n_startup_trials are random, the
rest are not), NSGA-II and other model-based samplers propose the next trial from earlier trials' results,
which depend on the data; the trials are then no longer repetitions of one algorithm and Theorems 2 and 6 do
not apply. A grid enumerated in a fixed order is not repetition of one randomized algorithm either. Papernot
and Steinke analyse random search only; Wang, Gao, Zhang, Su and Shen, "DP-HyPO: An Adaptive Private
Hyperparameter Optimization Framework" (NeurIPS 2023, Sections 1 and 3) state that these results require each
run's hyperparameters to be sampled uniformly from a fixed set, and that adaptive search is either not allowed
by them or costs a privacy loss polynomial in the number of runs. So, instead of an adaptive sampler, either
* use Optuna's RandomSampler (independent draws) with a secret seed, and K from `TrialCount.draw`; or
* account by composition: a fixed number k of adaptively chosen trials, each (lambda, eps_i)-RDP, is
  (lambda, sum eps_i)-RDP by the adaptive composition of RDP (Mironov, "Renyi Differential Privacy", CSF
  2017, Proposition 1); `composed_rdp` gives it for k trials of the worst candidate, whatever is released.
DP-HyPO's own adaptive bound is not implemented here.

All epsilons here are RDP-accounted. The headline of one model in mnist_etc.dp.accounting is the PLD
accountant's (smaller); compare a search's epsilon with `epsilon_one_trial`, not with that headline.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import dp_accounting
import numpy as np
from dp_accounting.rdp import rdp_privacy_accountant
from scipy import optimize, special

DEFAULT_ORDERS: tuple[float, ...] = tuple(float(o) for o in rdp_privacy_accountant.DEFAULT_RDP_ORDERS)
PAPER = "Papernot and Steinke, Hyperparameter Tuning with Renyi Differential Privacy (ICLR 2022)"

# gamma's range for solving a mean: above 1e-300, gamma^eta stays below 1e300 for every eta in (-1, 0); below
# 1 - 1e-12, E[K] - 1 is still resolved in double precision.
_SMALLEST_GAMMA = 1e-300
_LARGEST_GAMMA = 1 - 1e-12


def _finite_number(value: object, name: str, accepted: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be {accepted}; got {value!r}.")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be {accepted}; got {value!r}.")
    return number


@dataclass(frozen=True)
class TruncatedNegativeBinomial:
    """K on {1, 2, ...} with P[K = k] = (1 - gamma)^k / (gamma^-eta - 1) * prod_{l<k} (l + eta) / (l + 1)
    (Definition 1 of the paper). eta = 1: geometric, P[K = k] = gamma (1 - gamma)^(k-1). eta = 0 (the limit):
    logarithmic, P[K = k] = (1 - gamma)^k / (k log(1/gamma)). Smaller eta: a heavier tail and a smaller
    privacy cost, (2 + eta) eps for an eps-DP trial."""

    eta: float
    gamma: float

    def __post_init__(self) -> None:
        eta = _finite_number(self.eta, "eta", "a finite number greater than -1 (1 = geometric, 0 = logarithmic)")
        if eta <= -1:
            raise ValueError(f"eta must be a finite number greater than -1 (1 = geometric, 0 = logarithmic); "
                             f"got {self.eta!r}.")
        gamma = _finite_number(self.gamma, "gamma", "a number strictly between 0 and 1")
        if not 0 < gamma < 1:
            raise ValueError(f"gamma must be a number strictly between 0 and 1; got {self.gamma!r}.")
        object.__setattr__(self, "eta", eta)
        object.__setattr__(self, "gamma", gamma)

    @classmethod
    def with_mean(cls, mean: float, eta: float = 1.0) -> TruncatedNegativeBinomial:
        """The distribution of this eta whose E[K] is `mean` (gamma solved to double precision)."""
        target = _finite_number(mean, "the mean number of trials", "a finite number greater than 1")
        if target <= 1:
            raise ValueError(f"the mean number of trials of a truncated negative binomial must be a finite number "
                             f"greater than 1 (K >= 1 always); got {mean!r}.")
        probe = cls(eta, 0.5)  # validates eta with the same sentence as the constructor
        if probe.eta == 1:
            return cls(1.0, 1.0 / target)
        most, least = _tnb_mean(probe.eta, _SMALLEST_GAMMA), _tnb_mean(probe.eta, _LARGEST_GAMMA)
        if not least < target < most:
            raise ValueError(f"the mean number of trials must lie between {least:.6g} and {most:.3g} for "
                             f"eta = {probe.eta:g} (gamma between {_SMALLEST_GAMMA:g} and 1 - 1e-12); got {mean!r}.")
        # log E[K] falls monotonically from log(most) to 0 as log(gamma) rises to 0: a root in log(gamma)
        # converges at any scale of gamma (a heavy tail, eta near -1, needs gamma ~ 1e-10 for mean 8).
        gap = lambda log_gamma: math.log(_tnb_mean(probe.eta, math.exp(log_gamma))) - math.log(target)  # noqa: E731
        log_gamma = optimize.brentq(gap, math.log(_SMALLEST_GAMMA), math.log(_LARGEST_GAMMA),
                                    xtol=1e-15, rtol=4 * np.finfo(float).eps)
        gamma = math.exp(log_gamma)
        return cls(probe.eta, gamma)

    @property
    def mean(self) -> float:
        return _tnb_mean(self.eta, self.gamma)

    def probability(self, k: int) -> float:
        return float(np.exp(self._log_probabilities(np.array([k], dtype=float)))[0]) if k >= 1 else 0.0

    def _log_probabilities(self, ks: np.ndarray) -> np.ndarray:
        # Gamma(k + eta) / Gamma(eta) = eta Gamma(k + eta) / Gamma(1 + eta) keeps every factor positive.
        return (ks * math.log1p(-self.gamma) + _tnb_log_first_weight(self.eta, self.gamma)
                + special.gammaln(ks + self.eta) - special.gammaln(1 + self.eta) - special.gammaln(ks + 1))

    def draw(self, rng: np.random.Generator) -> int:
        """One K >= 1, by inverting the CDF: one uniform, the probabilities in blocks that double (a heavy
        tail, eta < 0, can draw a K of millions; the search then has to run that many trials)."""
        u = rng.random()
        start, size, cdf = 1, 64, 0.0
        while True:
            running = cdf + np.cumsum(np.exp(self._log_probabilities(np.arange(start, start + size, dtype=float))))
            first_at_u = int(np.searchsorted(running, u, side="left"))
            if first_at_u < size:
                return start + first_at_u
            if running[-1] == cdf:  # the tail left is below double precision: the mass ended before this block
                return start - 1
            start, size, cdf = start + size, min(2 * size, 1 << 20), float(running[-1])

    def name(self) -> str:
        kind = {1.0: "geometric", 0.0: "logarithmic"}.get(self.eta, "truncated negative binomial")
        return f"{kind} (eta = {self.eta:g}, gamma = {self.gamma:.4g})"

    def describe(self) -> str:
        kind = self.name().split(" (")[0]
        return f"{kind} (eta = {self.eta:g}, gamma = {self.gamma:.4g}; mean {self.mean:.4g})"


def _tnb_mean(eta: float, gamma: float) -> float:
    """E[K] = eta (1 - gamma) / (gamma (1 - gamma^eta)), and (1/gamma - 1) / log(1/gamma) at eta = 0; expm1
    keeps a small eta exact and gamma^eta cannot overflow for gamma >= 1e-300 and eta > -1."""
    if eta == 0:
        return (1 - gamma) / (gamma * -math.log(gamma))
    return eta * (1 - gamma) / (gamma * -math.expm1(eta * math.log(gamma)))


def _tnb_log_first_weight(eta: float, gamma: float) -> float:
    """log(eta / (gamma^-eta - 1)), positive inside for every eta > -1, with limit -log(log(1/gamma)) at
    eta = 0; in logs because gamma^-eta overflows for a large eta."""
    if eta == 0:
        return -math.log(-math.log(gamma))
    x = -eta * math.log(gamma)  # the sign of eta
    log_abs_expm1 = x + math.log1p(-math.exp(-x)) if x > 30 else math.log(abs(math.expm1(x)))
    return math.log(abs(eta)) - log_abs_expm1


@dataclass(frozen=True)
class Poisson:
    """K ~ Poisson(mu) on {0, 1, ...}; K = 0 releases nothing."""

    mu: float

    def __post_init__(self) -> None:
        # mu >= 1 is the domain dp_accounting's RepeatAndSelectDpEvent accepts; a search of fewer than one
        # trial on average is not a search.
        mu = _finite_number(self.mu, "the Poisson mean mu", "a finite number of at least 1")
        if mu < 1:
            raise ValueError(f"the Poisson mean mu must be a finite number of at least 1; got {self.mu!r}.")
        object.__setattr__(self, "mu", mu)

    @classmethod
    def with_mean(cls, mean: float) -> Poisson:
        return cls(mean)

    @property
    def mean(self) -> float:
        return self.mu

    def probability(self, k: int) -> float:
        if k < 0:
            return 0.0
        return math.exp(k * math.log(self.mu) - self.mu - math.lgamma(k + 1))

    def draw(self, rng: np.random.Generator) -> int:
        return int(rng.poisson(self.mu))

    def name(self) -> str:
        return f"Poisson (mu = {self.mu:g})"

    def describe(self) -> str:
        return f"Poisson (mean mu = {self.mu:.4g})"


TrialCount = Union[TruncatedNegativeBinomial, Poisson]


def _checked_orders(orders: Sequence[float]) -> np.ndarray:
    array = np.asarray(orders, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"orders must be a non-empty list of Renyi orders >= 1; got {orders!r}.")
    bad = array[~np.isfinite(array) | (array < 1)]
    if bad.size:
        raise ValueError(f"orders must be finite Renyi orders >= 1; got {float(bad[0])!r}.")
    return array


def _checked_curve(size: int, curve: Sequence[float] | np.ndarray, what: str = "an RDP curve") -> np.ndarray:
    array = np.asarray(curve, dtype=float)
    if array.shape != (size,):
        raise ValueError(f"{what} must hold one value per order ({size}); got shape {array.shape}.")
    bad = array[np.isnan(array) | (array < 0)]
    if bad.size:
        raise ValueError(f"{what} must hold non-negative numbers or inf; got {bad[0]!r}.")
    return array


def trial_rdp(events: dp_accounting.DpEvent | Sequence[dp_accounting.DpEvent],
              orders: Sequence[float] = DEFAULT_ORDERS) -> np.ndarray:
    """RDP of one trial at each order: its DpEvent, or its stages' events composed, through dp_accounting's
    RdpAccountant. A NonPrivateDpEvent anywhere gives inf at every order; an event the RDP accountant cannot
    account raises dp_accounting.UnsupportedEventError."""
    order_array = _checked_orders(orders)
    if isinstance(events, dp_accounting.DpEvent):
        event = events
    else:
        stages = list(events)
        if not stages:
            raise ValueError("a trial needs at least one DpEvent; got an empty list.")
        event = dp_accounting.ComposedDpEvent(stages)
    accountant = rdp_privacy_accountant.RdpAccountant(orders=list(order_array))
    accountant.compose(event)
    return accountant.rdp


def worst_case_rdp(curves: Sequence[np.ndarray]) -> np.ndarray:
    """The pointwise maximum of the candidates' RDP curves: an RDP curve of one random-search trial.

    Why it is enough: a trial that draws hyperparameters h ~ pi, independently of the data, and then trains
    with them has output distribution P = sum_h pi(h) P_h on dataset x and Q = sum_h pi(h) Q_h on a
    neighbour x', with the SAME weights pi on both sides. Renyi divergence is jointly quasi-convex at every
    order (van Erven and Harremoes, "Renyi Divergence and Kullback-Leibler Divergence", IEEE Trans. Inf.
    Theory 60(7), 2014, Theorem 13), so D_lambda(P || Q) <= max_h D_lambda(P_h || Q_h). Directly, for
    lambda > 1: exp((lambda - 1) D_lambda) = integral of p^lambda q^(1 - lambda), and (p, q) -> p^lambda
    q^(1 - lambda) is jointly convex (the perspective of t^lambda), so Jensen bounds the mixture's integral
    by the pi-average of the candidates', hence by their maximum. Neither argument survives weights that
    depend on the data (an adaptive sampler), and the maximum must run over every candidate pi can draw."""
    if len(curves) == 0:
        raise ValueError("worst_case_rdp needs the RDP curve of at least one candidate trial; got none.")
    size = np.asarray(curves[0]).size
    stacked = np.vstack([_checked_curve(size, c, f"candidate curve {i}") for i, c in enumerate(curves)])
    return stacked.max(axis=0)


def composed_rdp(curve: np.ndarray, k: int) -> np.ndarray:
    """RDP of k trials composed (k * curve): the bound for a FIXED number k of trials, adaptive or not, when
    everything, or only the best, is released (releasing less is post-processing)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"the number of composed trials k must be an integer of at least 1; got {k!r}.")
    return _checked_curve(np.asarray(curve).size, curve) * int(k)


def tuned_rdp(orders: Sequence[float], curve: np.ndarray, distribution: TrialCount) -> np.ndarray:
    """RDP, at each order, of releasing the best of K ~ `distribution` independent trials whose RDP curve is
    `curve` (Theorem 2 for a truncated negative binomial, Theorem 6 for Poisson). inf at order 1, where the
    theorems say nothing. Lower orders then take the best bound of any higher order, since Renyi divergence
    does not decrease with the order (van Erven and Harremoes 2014, Theorem 3), as dp_accounting does."""
    order_array = _checked_orders(orders)
    base = _checked_curve(order_array.size, curve)
    if isinstance(distribution, TruncatedNegativeBinomial):
        bound = _theorem2_rdp(order_array, base, distribution)
    elif isinstance(distribution, Poisson):
        bound = _theorem6_rdp(order_array, base, distribution)
    else:
        raise ValueError(f"distribution must be a TruncatedNegativeBinomial or a Poisson; got {distribution!r}.")
    return _nondecreasing_in_order(order_array, bound)


def _theorem2_rdp(orders: np.ndarray, curve: np.ndarray, d: TruncatedNegativeBinomial) -> np.ndarray:
    # lambda_hat enters only through this term, the same for every lambda: minimise it once over the grid.
    # At lambda_hat = 1 the eps_hat factor (1 - 1/lambda_hat) is 0 (KL is finite whenever any order is).
    with np.errstate(invalid="ignore"):
        eps_hat_part = np.where(orders == 1, 0.0, (1 - 1 / orders) * curve)
    lambda_hat_cost = (1 + d.eta) * float(np.min(eps_hat_part + math.log(1 / d.gamma) / orders))
    bound = np.full(orders.shape, np.inf)
    above_one = orders > 1
    bound[above_one] = curve[above_one] + lambda_hat_cost + math.log(d.mean) / (orders[above_one] - 1)
    return bound


def _theorem6_rdp(orders: np.ndarray, curve: np.ndarray, d: Poisson) -> np.ndarray:
    bound = np.full(orders.shape, np.inf)
    for i, lam in enumerate(orders):
        if lam <= 1 or math.isinf(curve[i]):
            continue
        # The largest eps_hat the theorem admits gives the smallest delta_hat; delta_hat from the RDP curve by
        # the same conversion RdpAccountant.get_delta uses.
        eps_hat = math.log1p(1 / (lam - 1))
        delta_hat = rdp_privacy_accountant.compute_delta(orders, curve, eps_hat)[0]
        bound[i] = curve[i] + d.mu * delta_hat + math.log(d.mu) / (lam - 1)
    return bound


def _nondecreasing_in_order(orders: np.ndarray, bound: np.ndarray) -> np.ndarray:
    rank = np.argsort(orders, kind="stable")
    best_from_above = np.minimum.accumulate(bound[rank][::-1])[::-1]
    out = np.empty_like(bound)
    out[rank] = best_from_above
    return out


def epsilon_from_rdp(orders: Sequence[float], rdp: np.ndarray, delta: float) -> float:
    """(epsilon, delta)-DP from an RDP curve: dp_accounting's compute_epsilon, the conversion
    RdpAccountant.get_epsilon uses (Canonne, Kamath and Steinke 2020, Proposition 12)."""
    order_array = _checked_orders(orders)
    curve = _checked_curve(order_array.size, rdp)
    target = _checked_delta(delta)
    return float(rdp_privacy_accountant.compute_epsilon(order_array, curve, target)[0])


def _checked_delta(delta: float) -> float:
    value = _finite_number(delta, "delta", "a number strictly between 0 and 1")
    if not 0 < value < 1:
        raise ValueError(f"delta must be a number strictly between 0 and 1; got {delta!r}.")
    return value


def _theorem_of(distribution: TrialCount) -> str:
    return "Theorem 2" if isinstance(distribution, TruncatedNegativeBinomial) else "Theorem 6"


def fixed_count_of(distribution: TrialCount) -> int:
    """The whole number of trials composition is compared at: the mean, rounded up (a mean solved to double
    precision, 8.000000000000002, still counts as 8)."""
    return max(1, math.ceil(distribution.mean - 1e-9))


@dataclass(frozen=True)
class SearchPrivacy:
    """What a random hyperparameter search that releases only its best trial costs, in (epsilon, delta)-DP."""

    epsilon_search: float           # the best of K ~ distribution trials (inf if a candidate is not private)
    epsilon_one_trial: float        # one trial of the worst candidate
    epsilon_composed_fixed: float   # fixed_count trials of the worst candidate composed, for comparison
    fixed_count: int
    delta: float
    distribution: TrialCount
    orders: tuple[float, ...]
    theorem: str                    # "Theorem 2" or "Theorem 6" of the paper
    reason: str | None = None       # why epsilon is infinite; None when it is finite

    def statement(self) -> str:
        if self.reason is not None:
            verdict = "Not differentially private" if math.isinf(self.epsilon_one_trial) else "No finite bound"
            return (f"{verdict}: {self.reason}, so releasing the best of K ~ {self.distribution.describe()} "
                    f"trials has epsilon = inf.")
        return (f"Releasing only the best of K random-search trials, K ~ {self.distribution.describe()}, is "
                f"({self.epsilon_search:.3g}, {self.delta:.3g})-DP by {PAPER}, {self.theorem}, in RDP accounting, "
                f"against ({self.epsilon_one_trial:.3g}, {self.delta:.3g}) for one trial and "
                f"{self.epsilon_composed_fixed:.3g} for {self.fixed_count} trials composed.")

    def as_dict(self) -> dict:
        return {"epsilon_search": self.epsilon_search, "epsilon_one_trial": self.epsilon_one_trial,
                "epsilon_composed_fixed": self.epsilon_composed_fixed, "fixed_count": self.fixed_count,
                "delta": self.delta, "distribution": self.distribution.name(), "mean_trials": self.distribution.mean,
                "theorem": f"{PAPER}, {self.theorem}", "reason": self.reason, "statement": self.statement()}


Trial = Union[dp_accounting.DpEvent, Sequence[dp_accounting.DpEvent], np.ndarray]


def account_search(trials: Sequence[Trial], distribution: TrialCount, delta: float,
                   orders: Sequence[float] = DEFAULT_ORDERS) -> SearchPrivacy:
    """Epsilon of releasing the best of K ~ `distribution` random-search trials, with one trial's and the
    fixed-count composition's for comparison.

    `trials`: every candidate the search can draw, each a DpEvent, a list of DpEvents (a trial's stages,
    composed) or an RDP curve over `orders` (a numpy array). The search is bounded by the worst of them."""
    order_array = _checked_orders(orders)
    target = _checked_delta(delta)
    if not isinstance(distribution, (TruncatedNegativeBinomial, Poisson)):
        raise ValueError(f"distribution must be a TruncatedNegativeBinomial or a Poisson; got {distribution!r}.")
    if len(trials) == 0:
        raise ValueError("account_search needs at least one candidate trial; got none.")
    curves = [_checked_curve(order_array.size, t, f"trial {i}'s RDP curve") if isinstance(t, np.ndarray)
              else trial_rdp(t, order_array) for i, t in enumerate(trials)]
    worst = worst_case_rdp(curves)
    count = fixed_count_of(distribution)
    common = dict(fixed_count=count, delta=target, distribution=distribution,
                  orders=tuple(float(o) for o in order_array), theorem=_theorem_of(distribution))
    not_private = [i for i, c in enumerate(curves) if np.all(np.isinf(c[order_array > 1]))]
    if not_private:
        which = ", ".join(str(i) for i in not_private)
        reason = (f"a trial is not private (candidate {which} of {len(curves)} has infinite RDP at every order, "
                  f"e.g. a stage trained without DP noise)")
        return SearchPrivacy(math.inf, math.inf, math.inf, reason=reason, **common)
    one = epsilon_from_rdp(order_array, worst, target)
    search = epsilon_from_rdp(order_array, tuned_rdp(order_array, worst, distribution), target)
    composed = epsilon_from_rdp(order_array, composed_rdp(worst, count), target)
    reason = None if math.isfinite(search) else "the bound is infinite at every order of the grid"
    return SearchPrivacy(search, one, composed, reason=reason, **common)
