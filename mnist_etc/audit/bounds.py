"""Audit bounds: pure math that turns what an audit observed into statements about privacy.

Three bounds, each with what it assumes and where it comes from.

1. Membership as an epsilon lower bound (`membership_epsilon_bound`).
   From true positives among n members and false positives among n' non-members at a threshold fixed on other
   examples, with one-sided Clopper-Pearson bounds TPR >= TPR_low and FPR <= FPR_high,
       epsilon_lb = max(log((TPR_low - delta) / FPR_high), log((TNR_low - delta) / FNR_high), 0)
   with TNR_low = 1 - FPR_high and FNR_high = 1 - TPR_low. An (epsilon, delta)-DP mechanism has
   TPR <= e^eps FPR + delta and TNR <= e^eps FNR + delta for every test (the hypothesis-testing reading of
   DP, Kairouz, Oh, Viswanath 2015; as an audit, Jagielski, Ullman, Oprea 2020 and Nasr et al. 2021). Both
   ratios grow with TPR and shrink with FPR, so the one pair (TPR_low, FPR_high) validates both at once; each
   one-sided bound is taken at 1 - (1 - confidence) / 2 so that both hold together with probability at least
   `confidence` (union bound, valid whether or not the two samples are independent).
   Assumes: each evaluated example is an independent Bernoulli trial of the membership game (the counts are
   binomial). With one trained model and many members that is a modelling assumption, not a theorem; the
   one-run bounds (3 below, and Steinke et al. in mnist_etc.audit.canary.bound) hold for a single run.
   `pure_dp_max_auc`: the same reading bounds the ROC of a pure eps-DP mechanism by TPR = 1 - f_{eps,0}(FPR), whose
   area is e^eps / (1 + e^eps); the audit's default membership AUC bound 0.6 is that of eps = log 1.5 = 0.405.

2. Reconstruction success (`reconstruction_bound_gdp`, `reconstruction_bound_from_events`).
   An informed attacker knows every training record but the target z, drawn from a prior whose best blind
   guess succeeds with probability kappa (51 same-class candidates: kappa = 1/51). If the pair (reference
   output without z, real output with z) satisfies the trade-off function f, the attacker succeeds with
   probability at most 1 - f(kappa) (ReRo: Balle, Cherubin, Hayes 2022; Hayes, Mahloujifar, Balle 2023,
   "Bounding training data reconstruction in DP-SGD"; Kaissis, Hayes, Ziller, Rueckert 2023, "Bounding data
   reconstruction attacks with the hypothesis testing interpretation of differential privacy"). For mu-GDP it
   is Phi(Phi^-1(kappa) + mu).
   Why add/remove adjacency suffices: for each z let E_z be "the attack outputs z". The reference output does
   not depend on z, so E_pi[P_ref(E_z)] <= kappa; f-DP gives P_z(E_z) <= 1 - f(P_ref(E_z)); 1 - f is concave
   and non-decreasing, so Jensen gives 1 - f(kappa). The argument needs only that reference and real world are
   neighbours: the reference may be training without z (add/remove-one) or with a fixed other candidate
   (replace-one). Add/remove is enough and is the tighter, so it is the default; it is the pair Hayes et al.
   2023 bound for DP-SGD (the subsampled Gaussian with and without the target's gradient). dp_accounting
   0.4.3's PLD accountant refuses replace-one for Poisson-sampled events, so `adjacency="replace_one"` is
   derived from the add/remove curve by group privacy (replace = remove, then add; Dong, Roth, Su 2022):
   success <= b(b(kappa)) with b = 1 - f, valid and conservative.
   The DP-SGD curve comes from the PLD privacy profile delta(eps) on a grid of eps:
   f(a) = sup_eps max(0, 1 - delta(eps) - e^eps a, e^-eps (1 - delta(eps) - a)) (Dong, Roth, Su 2022,
   Prop. 2.12). A finite grid and the PLD's pessimistic discretisation can only lower f: the bound errs high.

3. The f-DP one-run bound (`one_run_fdp_rejects`, `one_run_fdp_bound`) of Mahloujifar, Melis, Chaudhuri,
   "Auditing f-Differential Privacy in One Run" (ICML 2025, arXiv 2410.22235). m canaries, each included
   independently with probability 1/2; after one run the auditor guesses membership for r of them (abstaining
   on the rest) and gets v right. For a hypothesised trade-off function f with blow-up b = 1 - f, the
   recursion starts at r_v = tau v / m, h_v = tau (r - v) / m and for i = v - 1 .. 0 sets
       h_i = max(h_{i+1}, b^-1(r_{i+1})),   r_i = r_{i+1} + i / (r - i) * (h_i - h_{i+1})
   (membership is the alphabet k = 2, so the paper's factor k - 1 is 1); if r_0 + h_0 > r / m, then
   P[at least v right] <= tau for every f-DP mechanism, and the observation rejects f at confidence 1 - tau.
   Implemented as in Meta's PrivacyGuard (facebookresearch/PrivacyGuard, privacy_guard/analysis/mia/
   fdp_analysis_node.py, audit_rh_with_cap) and google-deepmind/jax_privacy (jax_privacy/auditing.py,
   _epsilon_one_run_fdp, whose test figures tests/test_audit_bounds.py reproduces); the paper's own text was
   not available to us. The number of guesses and the guessing rule must be fixed before inclusion is looked
   at, or paid for (mnist_etc.audit.canary.bound's Bonferroni grid over guess counts).
   For the Gaussian family (b^-1(y) = Phi(Phi^-1(y) - mu)) the bound is the largest rejected mu, and its
   epsilon at delta is that of mu-GDP: "the model is not mu_lb-GDP", which is weaker than rejecting
   (epsilon_lb, delta)-DP. To test the accounted guarantee itself, hand the recursion the accounted curve
   (`trade_off_curve(events).inverse_blow_up`).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable, Sequence

import dp_accounting
import numpy as np
from dp_accounting import pld
from scipy import optimize, special, stats

ADD_REMOVE = "add_remove"
REPLACE_ONE = "replace_one"
ADJACENCIES = (ADD_REMOVE, REPLACE_ONE)

PLD_DISCRETISATION = 1e-3     # as mnist_etc.dp.accounting: the PLD's pessimistic rounding errs safe
EPSILON_GRID_POINTS = 4001    # privacy-profile grid; spacing only loosens f (never invalidates it)
EPSILON_GRID_FLOOR_DELTA = 1e-12   # the grid reaches the eps where delta(eps) falls to this


# ---------------------------------------------------------------------------------------------- validation

def _require_count(name: str, value, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    return int(value)


def _require_open_unit(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be a number strictly between 0 and 1, got {value!r}.")
    return float(value)


def _require_delta(value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ValueError(f"delta must be a number in [0, 1), got {value!r}.")
    return float(value)


def _require_mu(value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value) or value < 0:
        raise ValueError(f"mu must be a number >= 0 (math.inf for no privacy), got {value!r}.")
    return float(value)


def _require_unit(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}.")
    return float(value)


def _require_adjacency(value) -> str:
    if value not in ADJACENCIES:
        raise ValueError(f"adjacency must be one of {ADJACENCIES}, got {value!r}.")
    return value


# ------------------------------------------------------------------------------------- 1. membership -> eps

def clopper_pearson_lower(successes: int, trials: int, confidence: float) -> float:
    """One-sided lower confidence bound on a binomial proportion: P[p >= bound] >= confidence."""
    k, n = _require_count("successes", successes), _require_count("trials", trials, 1)
    if k > n:
        raise ValueError(f"successes must be at most trials ({n}), got {k}.")
    confidence = _require_open_unit("confidence", confidence)
    return 0.0 if k == 0 else float(stats.beta.ppf(1.0 - confidence, k, n - k + 1))


def clopper_pearson_upper(successes: int, trials: int, confidence: float) -> float:
    """One-sided upper confidence bound on a binomial proportion: P[p <= bound] >= confidence."""
    k, n = _require_count("successes", successes), _require_count("trials", trials, 1)
    if k > n:
        raise ValueError(f"successes must be at most trials ({n}), got {k}.")
    confidence = _require_open_unit("confidence", confidence)
    return 1.0 if k == n else float(stats.beta.ppf(confidence, k + 1, n - k))


@dataclass(frozen=True)
class MembershipEpsilonBound:
    epsilon_lb: float          # with `confidence`: the model is not (epsilon_lb, delta)-DP (0: nothing shown)
    side: str                  # which ratio gave it: "tpr/fpr", "tnr/fnr" or "none"
    tpr_low: float             # one-sided Clopper-Pearson bounds, each at `per_bound_confidence`
    fpr_high: float
    tnr_low: float             # = 1 - fpr_high
    fnr_high: float            # = 1 - tpr_low
    tpr: float                 # point estimates, for the record
    fpr: float
    true_positives: int
    members: int
    false_positives: int
    non_members: int
    confidence: float          # both bounds hold together with at least this probability
    per_bound_confidence: float
    delta: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def membership_epsilon_bound(true_positives: int, members: int, false_positives: int, non_members: int,
                             confidence: float = 0.95, delta: float = 0.0) -> MembershipEpsilonBound:
    """The epsilon a membership attack's counts rule out, at `confidence` (module docstring, bound 1).

    The counts must come from a threshold chosen on other examples (membership.split_half_advantage's
    held-out half): choosing it on these counts would spend the confidence on the choice."""
    n_in, n_out = _require_count("members", members, 1), _require_count("non_members", non_members, 1)
    tp, fp = _require_count("true_positives", true_positives), _require_count("false_positives", false_positives)
    if tp > n_in:
        raise ValueError(f"true_positives must be at most members ({n_in}), got {tp}.")
    if fp > n_out:
        raise ValueError(f"false_positives must be at most non_members ({n_out}), got {fp}.")
    confidence, delta = _require_open_unit("confidence", confidence), _require_delta(delta)
    # Union bound: each one-sided bound fails with probability (1 - confidence) / 2.
    per_bound = 1.0 - (1.0 - confidence) / 2.0
    tpr_low = clopper_pearson_lower(tp, n_in, per_bound)
    fpr_high = clopper_pearson_upper(fp, n_out, per_bound)
    tnr_low, fnr_high = 1.0 - fpr_high, 1.0 - tpr_low
    candidates = {"tpr/fpr": _log_ratio(tpr_low - delta, fpr_high),
                  "tnr/fnr": _log_ratio(tnr_low - delta, fnr_high)}
    side, best = max(candidates.items(), key=lambda item: item[1])
    if not best > 0:
        side, best = "none", 0.0
    return MembershipEpsilonBound(
        epsilon_lb=best, side=side, tpr_low=tpr_low, fpr_high=fpr_high, tnr_low=tnr_low, fnr_high=fnr_high,
        tpr=tp / n_in, fpr=fp / n_out, true_positives=tp, members=n_in, false_positives=fp, non_members=n_out,
        confidence=confidence, per_bound_confidence=per_bound, delta=delta)


def membership_epsilon_lbs(true_positives: np.ndarray, members: int, false_positives: np.ndarray,
                           non_members: int, confidence: float = 0.95, delta: float = 0.0) -> np.ndarray:
    """`membership_epsilon_bound(...).epsilon_lb` for many thresholds at once (arrays of counts), for choosing a
    threshold on one half of the examples; the figure reported is then `membership_epsilon_bound`'s."""
    n_in, n_out = _require_count("members", members, 1), _require_count("non_members", non_members, 1)
    tp, fp = np.asarray(true_positives, dtype=int), np.asarray(false_positives, dtype=int)
    if tp.shape != fp.shape or np.any(tp < 0) or np.any(tp > n_in) or np.any(fp < 0) or np.any(fp > n_out):
        raise ValueError(f"true_positives and false_positives must be arrays of one shape with counts in [0, {n_in}] "
                         f"and [0, {n_out}], got shapes {tp.shape} and {fp.shape}.")
    confidence, delta = _require_open_unit("confidence", confidence), _require_delta(delta)
    per_bound = 1.0 - (1.0 - confidence) / 2.0
    with np.errstate(invalid="ignore"):
        tpr_low = np.where(tp == 0, 0.0, stats.beta.ppf(1.0 - per_bound, np.maximum(tp, 1), n_in - tp + 1))
        fpr_high = np.where(fp == n_out, 1.0, stats.beta.ppf(per_bound, fp + 1, np.maximum(n_out - fp, 1)))
    with np.errstate(divide="ignore", invalid="ignore"):
        first = np.where(tpr_low - delta > 0, np.log(np.maximum(tpr_low - delta, 1e-300)) - np.log(fpr_high), -np.inf)
        second = np.where(1.0 - fpr_high - delta > 0,
                          np.log(np.maximum(1.0 - fpr_high - delta, 1e-300)) - np.log(1.0 - tpr_low), -np.inf)
    return np.maximum(np.maximum(first, second), 0.0)


def _log_ratio(numerator: float, denominator: float) -> float:
    """log(numerator / denominator), or -inf when the numerator is not positive (that side shows nothing)."""
    if numerator <= 0:
        return -math.inf
    return math.log(numerator) - math.log(denominator)


def pure_dp_max_auc(epsilon: float) -> float:
    """The largest membership AUC any pure epsilon-DP mechanism allows: e^eps / (1 + e^eps).

    The best ROC under (eps, 0)-DP is TPR = 1 - f(FPR) with f(a) = max(0, 1 - e^eps a, e^-eps (1 - a))
    (Kairouz, Oh, Viswanath 2015): TPR = e^eps a up to a* = 1 / (1 + e^eps), then 1 - e^-eps (1 - a).
    Integrating: e^eps a*^2 / 2 + (1 - a*) - e^-eps (1 - a*)^2 / 2 = e^eps / (1 + e^eps)."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or math.isnan(epsilon) or epsilon < 0:
        raise ValueError(f"epsilon must be a number >= 0 (math.inf for no privacy), got {epsilon!r}.")
    return float(special.expit(epsilon))


def pure_dp_epsilon_for_auc(auc: float) -> float:
    """The epsilon whose pure-DP maximum AUC is `auc` (the inverse of `pure_dp_max_auc`): log(auc / (1 - auc))."""
    if isinstance(auc, bool) or not isinstance(auc, numbers.Real) or not 0.5 <= auc < 1.0:
        raise ValueError(f"auc must be a number in [0.5, 1), got {auc!r}.")
    return float(special.logit(auc))


# --------------------------------------------------------------------------------- Gaussian DP (mu-GDP)

def gdp_delta(mu: float, epsilon: float) -> float:
    """delta(eps) of mu-GDP: Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2) (Dong, Roth, Su 2022, Cor. 2.13),
    the second term in log space so large eps does not overflow."""
    mu = _require_mu(mu)
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or not 0 <= epsilon < math.inf:
        raise ValueError(f"epsilon must be a finite number >= 0, got {epsilon!r}.")
    if mu == 0:
        return 0.0
    if math.isinf(mu):
        return 1.0
    first = special.ndtr(-epsilon / mu + mu / 2)
    second = math.exp(epsilon + special.log_ndtr(-epsilon / mu - mu / 2))
    return float(max(0.0, first - second))


def gdp_epsilon(mu: float, delta: float) -> float:
    """The smallest eps >= 0 with mu-GDP implying (eps, delta)-DP (inf for mu = inf)."""
    mu = _require_mu(mu)
    delta = _require_open_unit("delta", delta)
    if math.isinf(mu):
        return math.inf
    if gdp_delta(mu, 0.0) <= delta:
        return 0.0
    hi = max(1.0, mu * mu)
    while gdp_delta(mu, hi) > delta:
        hi *= 2
    return float(optimize.brentq(lambda e: gdp_delta(mu, e) - delta, 0.0, hi, xtol=1e-12, rtol=1e-12))


def gaussian_trade_off(mu: float, alpha: float) -> float:
    """f_mu(alpha) = Phi(Phi^-1(1 - alpha) - mu), the least type II error at type I error alpha under mu-GDP."""
    alpha = _require_unit("alpha", alpha)
    return float(special.ndtr(special.ndtri(1.0 - alpha) - _require_mu(mu)))


def gaussian_inverse_blow_up(mu: float) -> Callable[[float], float]:
    """b^-1 for mu-GDP, b(x) = 1 - f_mu(x) = Phi(Phi^-1(x) + mu): y -> Phi(Phi^-1(y) - mu)."""
    mu = _require_mu(mu)
    return lambda y: float(special.ndtr(special.ndtri(y) - mu))


# --------------------------------------------------------------------------- 2. reconstruction success

@dataclass(frozen=True, eq=False)
class TradeOffCurve:
    """f from a privacy profile: f(a) = max over the grid of max(0, 1 - d_j - e^e_j a, e^-e_j (1 - d_j - a)).

    Each (eps_j, delta_j) must be a valid guarantee in both directions (dp_accounting's add/remove PLD takes the
    larger of the add and remove hockey-stick divergences); then the mechanism is f-DP for this f."""
    epsilons: np.ndarray
    deltas: np.ndarray

    def f(self, alpha: float) -> float:
        a = _require_unit("alpha", alpha)
        room = 1.0 - self.deltas
        best = max(0.0, float(np.max(room - np.exp(self.epsilons) * a)),
                   float(np.max(np.exp(-self.epsilons) * (room - a))))
        return min(best, 1.0 - a)   # a trade-off function never exceeds 1 - alpha

    def blow_up(self, alpha: float) -> float:
        """b(alpha) = 1 - f(alpha): the most power any test of size alpha has."""
        return 1.0 - self.f(alpha)

    def inverse_blow_up(self, y: float) -> float:
        """sup{x : b(x) <= y}. b is the minimum of the increasing lines d_j + e^e_j x and
        1 - e^-e_j (1 - d_j - x), so the sup is the largest of their inverses at y."""
        if y >= 1.0:
            return 1.0
        first = (y - self.deltas) * np.exp(-self.epsilons)
        second = 1.0 - self.deltas - np.exp(self.epsilons) * (1.0 - y)
        return float(min(1.0, max(0.0, np.max(first), np.max(second))))


def _privacy_accountant(events: Sequence[dp_accounting.DpEvent], discretisation: float) -> pld.PLDAccountant:
    if (isinstance(events, dp_accounting.DpEvent) or not isinstance(events, (list, tuple))
            or not all(isinstance(e, dp_accounting.DpEvent) for e in events)):
        raise ValueError(f"events must be a list of dp_accounting DpEvents, got {events!r}.")
    if isinstance(discretisation, bool) or not isinstance(discretisation, numbers.Real) or not 0 < discretisation < 1:
        raise ValueError(f"discretisation must be a number strictly between 0 and 1, got {discretisation!r}.")
    composed = dp_accounting.ComposedDpEvent(list(events))
    accountant = pld.PLDAccountant(value_discretization_interval=discretisation)
    if not accountant.supports(composed):
        raise ValueError(f"events must be Gaussian, Laplace or Poisson-sampled Gaussian/Laplace events "
                         f"(possibly composed) that dp_accounting's PLD accountant supports, got {events!r}.")
    accountant.compose(composed)
    return accountant


def _is_non_private(accountant: pld.PLDAccountant) -> bool:
    # dp_accounting answers delta = 1 at every eps once a NonPrivateDpEvent or zero noise was composed.
    return float(np.max(accountant.get_delta(0.0))) >= 1.0


def trade_off_curve(events: Sequence[dp_accounting.DpEvent], discretisation: float = PLD_DISCRETISATION,
                    epsilons: np.ndarray | None = None) -> TradeOffCurve | None:
    """The add/remove trade-off curve of the composed events from their PLD privacy profile; None when the
    events include a non-private step (no curve but f = 0)."""
    accountant = _privacy_accountant(events, discretisation)
    if _is_non_private(accountant):
        return None
    if epsilons is None:
        top = accountant.get_epsilon(EPSILON_GRID_FLOOR_DELTA)
        top = 60.0 if not math.isfinite(top) else min(60.0, 1.25 * top + 1.0)
        epsilons = np.linspace(0.0, top, EPSILON_GRID_POINTS)
    epsilons = np.asarray(epsilons, dtype=float)
    if epsilons.ndim != 1 or epsilons.size == 0 or np.any(epsilons < 0) or not np.all(np.isfinite(epsilons)):
        raise ValueError(f"epsilons must be a non-empty 1-d array of finite numbers >= 0, got {epsilons!r}.")
    # The PLD accountant's get_delta forwards to PrivacyLossDistribution.get_delta_for_epsilon, which takes an
    # array: one vectorised pass instead of thousands of scalar calls.
    deltas = np.minimum(1.0, np.asarray(accountant.get_delta(epsilons), dtype=float))
    return TradeOffCurve(epsilons=epsilons, deltas=deltas)


@dataclass(frozen=True)
class ReconstructionBound:
    success_bound: float | None   # attacker's success probability is at most this; None: no bound below 1
    kappa: float                  # baseline: the best blind guess's success probability
    adjacency: str                # add_remove (reference = trained without the target) or replace_one
    method: str                   # "gdp closed form" or "pld privacy profile"
    reason: str                   # how it was obtained, or why there is none

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def reconstruction_bound_gdp(mu: float, kappa: float, adjacency: str = ADD_REMOVE) -> ReconstructionBound:
    """1 - f_mu(kappa) = Phi(Phi^-1(kappa) + mu) for a mechanism that is mu-GDP under add/remove; replace-one
    goes through group privacy, which for GDP is 2 mu."""
    mu, kappa, adjacency = _require_mu(mu), _require_open_unit("kappa", kappa), _require_adjacency(adjacency)
    if math.isinf(mu):
        return ReconstructionBound(None, kappa, adjacency, "gdp closed form",
                                   "no bound: mu = inf (not private), the attacker can succeed outright")
    effective = 2 * mu if adjacency == REPLACE_ONE else mu
    bound = float(special.ndtr(special.ndtri(kappa) + effective))
    return ReconstructionBound(bound, kappa, adjacency, "gdp closed form",
                               f"Phi(Phi^-1(kappa) + {effective:g}) for {mu:g}-GDP ({adjacency})")


def reconstruction_bound_from_events(events: Sequence[dp_accounting.DpEvent], kappa: float,
                                     adjacency: str = ADD_REMOVE,
                                     discretisation: float = PLD_DISCRETISATION) -> ReconstructionBound:
    """1 - f(kappa) with f the events' add/remove trade-off curve (module docstring, bound 2); replace-one as
    b(b(kappa)) with b = 1 - f (group privacy: replacing the target is removing it, then adding another)."""
    kappa, adjacency = _require_open_unit("kappa", kappa), _require_adjacency(adjacency)
    curve = trade_off_curve(events, discretisation)
    if curve is None:
        return ReconstructionBound(None, kappa, adjacency, "pld privacy profile",
                                   "no bound: the events include a non-private step (NonPrivateDpEvent or zero "
                                   "noise), so the model can carry the target outright")
    bound = curve.blow_up(kappa)
    if adjacency == REPLACE_ONE:
        bound = curve.blow_up(bound)
    return ReconstructionBound(float(bound), kappa, adjacency, "pld privacy profile",
                               f"1 - f(kappa), f from the PLD privacy profile on {curve.epsilons.size} epsilons "
                               f"in [0, {curve.epsilons[-1]:.3g}], discretisation {discretisation:g}"
                               + ("; replace-one by group privacy b(b(kappa))" if adjacency == REPLACE_ONE else ""))


# ----------------------------------------------------------------------------------- 3. f-DP in one run

def _require_game(m: int, r: int, v: int) -> tuple[int, int, int]:
    m, r, v = _require_count("m", m, 1), _require_count("r", r, 1), _require_count("v", v)
    if not v <= r <= m:
        raise ValueError(f"the guesses must satisfy 0 <= v <= r <= m, got v={v}, r={r}, m={m}.")
    return m, r, v


def one_run_fdp_rejects(m: int, r: int, v: int, confidence: float,
                        inverse_blow_up: Callable[[float], float]) -> bool:
    """Whether v correct of r guesses on m canaries rejects the trade-off curve whose inverse blow-up is given,
    at `confidence` (module docstring, bound 3)."""
    m, r, v = _require_game(m, r, v)
    tau = 1.0 - _require_open_unit("confidence", confidence)
    ratio_correct, ratio_wrong, budget = tau * v / m, tau * (r - v) / m, r / m
    for i in range(v - 1, -1, -1):
        # r_i + h_i only grows as i falls, so once it passes the budget the answer is "reject".
        if ratio_correct + ratio_wrong > budget:
            return True
        raised = max(ratio_wrong, inverse_blow_up(min(ratio_correct, 1.0)))
        if raised == ratio_wrong:
            break   # h unchanged: r is unchanged too, and nothing moves again
        ratio_correct += i / (r - i) * (raised - ratio_wrong)
        ratio_wrong = raised
    return ratio_correct + ratio_wrong > budget


def one_run_fdp_mu_lower_bound(m: int, r: int, v: int, confidence: float, tolerance: float = 1e-9) -> float:
    """The largest mu whose mu-GDP the observation rejects (0 when it rejects none). Every point kept as the
    lower end of the search was itself rejected, so the answer is a rejected mu (rounded down)."""
    m, r, v = _require_game(m, r, v)
    confidence = _require_open_unit("confidence", confidence)

    def rejects(mu: float) -> bool:
        return one_run_fdp_rejects(m, r, v, confidence, gaussian_inverse_blow_up(mu))

    if v == 0 or not rejects(0.0):
        return 0.0
    lo, hi = 0.0, 1.0
    while rejects(hi):
        lo, hi = hi, 2 * hi
        if hi > 1e3:   # b^-1 underflows to 0 long before this: nothing larger is rejected
            return lo
    while hi - lo > tolerance * max(1.0, lo):
        mid = (lo + hi) / 2
        if rejects(mid):
            lo = mid
        else:
            hi = mid
    return lo


@dataclass(frozen=True)
class FdpOneRunBound:
    mu_lb: float         # with `confidence`: the model is not mu_lb-GDP
    epsilon_lb: float    # epsilon of mu_lb-GDP at delta (the paper's "empirical epsilon")
    delta: float
    confidence: float
    canaries: int        # m
    guesses: int         # r
    correct: int         # v

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def one_run_fdp_bound(m: int, r: int, v: int, delta: float, confidence: float) -> FdpOneRunBound:
    """The Gaussian-family f-DP one-run bound: the largest rejected mu and its epsilon at delta."""
    delta = _require_open_unit("delta", delta)
    mu = one_run_fdp_mu_lower_bound(m, r, v, confidence)
    return FdpOneRunBound(mu_lb=mu, epsilon_lb=gdp_epsilon(mu, delta), delta=delta, confidence=confidence,
                          canaries=m, guesses=r, correct=v)


def steinke_all_correct_cap(r: int, confidence: float) -> float:
    """Steinke-Nasr-Jagielski's bound when all r guesses are right (delta = 0): P[r of r] = q^r for eps-DP
    randomised response with q = e^eps / (1 + e^eps), so the largest rejected eps is ln(q / (1 - q)) with
    q = (1 - confidence)^(1 / r): no observation with r guesses can show more."""
    r = _require_count("r", r, 1)
    q = (1.0 - _require_open_unit("confidence", confidence)) ** (1.0 / r)
    return math.log(q) - math.log1p(-q)


def one_run_fdp_all_correct_cap(m: int, r: int, delta: float, confidence: float) -> FdpOneRunBound:
    """The f-DP counterpart: the bound when all r guesses are right. Unlike Steinke's it depends on m as well
    as r (choosing the r most telling of more canaries makes a perfect score less surprising), and it is the
    most any observation with r guesses on m canaries can show."""
    return one_run_fdp_bound(m, r, r, delta, confidence)
