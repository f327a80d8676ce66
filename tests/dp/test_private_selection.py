"""Accounting of a private hyperparameter search (mnist_etc.dp.private_selection), checked against the paper's
own corollary, a closed form derived here for the Gaussian mechanism, dp_accounting's independent
implementation of the same theorems, and the distributions' definitions. Pure math: a few seconds in all."""
from __future__ import annotations

import dataclasses
import doctest
import functools
import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant
from scipy import stats

from mnist_etc.dp import private_selection as ps
from mnist_etc.dp.private_selection import (Poisson, TruncatedNegativeBinomial, account_search, composed_rdp,
                                            epsilon_from_rdp, trial_rdp, tuned_rdp, worst_case_rdp)

DELTA = 1e-5
ORDERS = np.asarray(ps.DEFAULT_ORDERS)


def dp_sgd_trial(n: int = 3600, batch: int = 64, ae_epochs: int = 10, clf_epochs: int = 20,
                 sigma: float = 1.1) -> list[dp_accounting.DpEvent]:
    """One trial of mnist-etc as mnist_etc.dp.accounting.stage_event builds it (that module loads
    TensorFlow, so it is mirrored here): two Poisson-sampled Gaussian stages, n // batch steps an epoch."""
    step = dp_accounting.PoissonSampledDpEvent(batch / n, dp_accounting.GaussianDpEvent(sigma))
    return [dp_accounting.SelfComposedDpEvent(step, epochs * (n // batch)) for epochs in (ae_epochs, clf_epochs)]


@functools.lru_cache(maxsize=None)
def dp_sgd_curve_of(sigma: float = 1.1) -> np.ndarray:
    """Computed once a session (~0.1 s each): the tests only read it."""
    return trial_rdp(dp_sgd_trial(sigma=sigma), ORDERS)


@pytest.fixture
def dp_sgd_curve() -> np.ndarray:
    return dp_sgd_curve_of()


def gaussian_curve(sigma: float, orders: np.ndarray) -> np.ndarray:
    """The Gaussian mechanism of sensitivity 1 is exactly (lambda, lambda / (2 sigma^2))-RDP."""
    return orders / (2 * sigma ** 2)


# --- the paper's numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("eta", [-0.5, 0.0, 1.0])
def test_corollary_3_pure_dp_trial_gives_2_plus_eta_eps_and_3_eps_for_geometric_like_liu_talwar(eta):
    # Corollary 3 (p. 6): an eps-DP trial, K ~ D_{eta,gamma}, gives ((2 + eta) eps)-DP; eta = 1 (geometric) is
    # Liu and Talwar's 3 eps. Pure eps-DP is D_lambda <= eps at every order, and Theorem 2 reaches the corollary
    # as lambda and lambda_hat go to infinity (D_infinity is pure DP), so at the top of a grid reaching 1e9 the
    # bound is (2 + eta) eps to ~1e-8, never below.
    eps = 0.5
    orders = np.geomspace(1.01, 1e9, 400)
    curve = np.full(orders.shape, eps)
    distribution = TruncatedNegativeBinomial.with_mean(8, eta=eta)
    assert math.log(1 / distribution.gamma) > eps  # else lambda_hat = 1 wins and the bound is below (2+eta) eps
    bound = tuned_rdp(orders, curve, distribution)
    assert (2 + eta) * eps <= bound[-1] <= (2 + eta) * eps + 1e-7
    # In (eps, delta) the conversion may even shave a little (delta = 1e-5 > 0): within 1e-4 of the corollary.
    assert epsilon_from_rdp(orders, bound, DELTA) == pytest.approx((2 + eta) * eps, abs=1e-4)
    assert epsilon_from_rdp(orders, curve, DELTA) == pytest.approx(eps, abs=1e-4)


@pytest.mark.parametrize("eta", [-0.5, 0.0, 0.5, 1.0, 3.0])
@pytest.mark.parametrize("mean", [3.0, 8.0, 20.0])
def test_theorem_2_for_the_gaussian_mechanism_matches_its_closed_form(eta, mean):
    # Derived here, not read: for eps(lambda) = rho lambda (rho = 1 / (2 sigma^2)), the lambda_hat term
    # (1 + eta)[(1 - 1/lh) rho lh + L / lh] = (1 + eta)[rho (lh - 1) + L / lh], L = log(1/gamma), is least at
    # lh = sqrt(L / rho), where it is (1 + eta)(2 sqrt(rho L) - rho) (when that lh >= 1). Then
    # rho lambda + log(E[K]) / (lambda - 1) is least at lambda = 1 + sqrt(log(E[K]) / rho), so
    # min over lambda of eps'(lambda) = rho + 2 sqrt(rho log E[K]) + (1 + eta)(2 sqrt(rho L) - rho).
    sigma, step = 3.0, 0.01
    rho = 1 / (2 * sigma ** 2)
    orders = np.arange(1.0, 400.0, step)
    distribution = TruncatedNegativeBinomial.with_mean(mean, eta=eta)
    log_inv_gamma, log_mean = math.log(1 / distribution.gamma), math.log(distribution.mean)
    best_hat = math.sqrt(log_inv_gamma / rho)
    assert 1 <= best_hat < orders[-1]
    hat_cost = (1 + eta) * (2 * math.sqrt(rho * log_inv_gamma) - rho)
    bound = tuned_rdp(orders, gaussian_curve(sigma, orders), distribution)
    # A grid of spacing h misses a minimum of curvature c by about c h^2 / 8 (c varies within h of it: allow
    # twice that), once for lambda_hat and once for lambda.
    hat_slack = 2 * (1 + eta) * 2 * log_inv_gamma / best_hat ** 3 * step ** 2 / 8
    grid_slack = hat_slack + 2 * 2 * log_mean / math.sqrt(log_mean / rho) ** 3 * step ** 2 / 8
    closed_min = rho + 2 * math.sqrt(rho * log_mean) + hat_cost
    assert closed_min - 1e-12 <= bound.min() <= closed_min + grid_slack + 1e-12
    # Pointwise above the best lambda, where the envelope over higher orders does not act.
    rising = orders > 1 + math.sqrt(log_mean / rho) + step
    exact = rho * orders[rising] + hat_cost + log_mean / (orders[rising] - 1)
    assert np.all(bound[rising] >= exact - 1e-12)
    assert np.all(bound[rising] <= exact + hat_slack + 1e-12)


# --- dp_accounting's own implementation of the same theorems -------------------------------------------------


def kinked_trial() -> dp_accounting.DpEvent:
    """A cheap trial whose curve has a kink (Laplace: min(eps, lambda eps^2 / 2)) on top of a Gaussian line."""
    return dp_accounting.ComposedDpEvent([dp_accounting.GaussianDpEvent(2.0), dp_accounting.LaplaceDpEvent(4.0)])


@pytest.mark.parametrize("shape", [0.0, 0.5, 1.0, 2.0, math.inf])
@pytest.mark.parametrize("trial, mean", [(kinked_trial, 2.0), (kinked_trial, 20.0), (dp_sgd_trial, 8.0)],
                         ids=["kinked-2", "kinked-20", "dp_sgd-8"])
def test_rdp_equals_dp_accountings_repeat_and_select_event(trial, mean, shape):
    # dp_accounting 0.4.3 implements Theorems 2 and 6 (RepeatAndSelectDpEvent, eta >= 0 only); it was written
    # apart from this module, so agreement checks the formulas, the mean -> gamma inversion and the grid minimum.
    event = trial() if trial is kinked_trial else dp_accounting.ComposedDpEvent(trial())
    accountant = rdp_privacy_accountant.RdpAccountant(orders=list(ORDERS))
    accountant.compose(dp_event.RepeatAndSelectDpEvent(event, mean, shape))
    theirs = accountant.rdp
    if shape == math.inf:
        distribution = Poisson.with_mean(mean)
        theirs = np.minimum.accumulate(theirs[::-1])[::-1]  # they skip the monotonicity step for Poisson
    else:
        distribution = TruncatedNegativeBinomial.with_mean(mean, eta=shape)
    curve = trial_rdp(event, ORDERS) if trial is kinked_trial else dp_sgd_curve_of()
    ours = tuned_rdp(ORDERS, curve, distribution)
    # rtol: their gamma is solved to a relative 1e-9.
    np.testing.assert_allclose(ours, theirs, rtol=1e-7)
    assert epsilon_from_rdp(ORDERS, ours, DELTA) == pytest.approx(accountant.get_epsilon(DELTA), rel=1e-7)


def test_epsilon_from_rdp_is_rdp_accountants_get_epsilon(dp_sgd_curve):
    accountant = rdp_privacy_accountant.RdpAccountant(orders=list(ORDERS))
    accountant.compose(dp_accounting.ComposedDpEvent(dp_sgd_trial()))
    assert epsilon_from_rdp(ORDERS, dp_sgd_curve, DELTA) == accountant.get_epsilon(DELTA)
    np.testing.assert_array_equal(dp_sgd_curve, accountant.rdp)


def test_poisson_bound_is_not_below_theorem_6_with_the_exact_gaussian_delta_hat():
    # Theorem 6 holds with any valid delta_hat; the exact one of the Gaussian mechanism (Balle and Wang 2018,
    # Theorem 8) is the smallest, so our delta_hat from the RDP curve may only give a larger bound. A bound below
    # it would mean a delta_hat the trial does not have (or a missing mu * delta_hat term).
    sigma, mu = 3.0, 10.0
    orders = np.asarray([o for o in ps.DEFAULT_ORDERS if o > 1])
    bound = tuned_rdp(orders, gaussian_curve(sigma, orders), Poisson(mu))
    eps_hat = np.log1p(1 / (orders - 1))
    exact_delta = (stats.norm.cdf(-eps_hat * sigma + 1 / (2 * sigma))
                   - np.exp(eps_hat) * stats.norm.cdf(-eps_hat * sigma - 1 / (2 * sigma)))
    tight = gaussian_curve(sigma, orders) + mu * exact_delta + math.log(mu) / (orders - 1)
    assert bound.min() >= tight.min() - 1e-12
    assert np.all(bound >= np.minimum.accumulate(tight[::-1])[::-1] - 1e-12)


# --- how the bound behaves -------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda m: TruncatedNegativeBinomial.with_mean(m, eta=0.0),
                                  lambda m: TruncatedNegativeBinomial.with_mean(m, eta=1.0),
                                  Poisson.with_mean], ids=["logarithmic", "geometric", "poisson"])
def test_search_costs_at_least_one_trial_and_more_with_more_trials(dp_sgd_curve, make):
    means = [1.5, 2, 4, 8, 16, 32, 64]
    one = epsilon_from_rdp(ORDERS, dp_sgd_curve, DELTA)
    searches = [epsilon_from_rdp(ORDERS, tuned_rdp(ORDERS, dp_sgd_curve, make(m)), DELTA) for m in means]
    assert min(searches) >= one
    assert all(later > earlier for earlier, later in zip(searches, searches[1:]))


@pytest.mark.parametrize("curve_of, composition_wins_at_2", [
    # mnist-etc's trial (n 3600, batch 64, 10 + 20 epochs, sigma 1.1, eps 4.1): the search already wins at mean 2.
    (dp_sgd_curve_of, False),
    # A single Gaussian release with sigma 4 (eps 1.0): composing 2 beats the search; the search wins from mean 3.
    (lambda: gaussian_curve(4.0, ORDERS), True),
], ids=["dp_sgd_trial", "gaussian_sigma_4"])
def test_search_beats_composing_the_mean_count_from_one_crossover_on(curve_of, composition_wins_at_2):
    # Composed epsilon grows roughly like sqrt(k), the search's like log(E[K]) plus a constant of about one to two
    # trials: they cross once, at a mean that depends on the trial. So for the smallest means composition can be
    # the better bound; the release statement reports both numbers.
    curve = curve_of()
    counts = list(range(2, 41))
    search = np.array([epsilon_from_rdp(ORDERS, tuned_rdp(ORDERS, curve, TruncatedNegativeBinomial.with_mean(k)),
                                        DELTA) for k in counts])
    composed = np.array([epsilon_from_rdp(ORDERS, composed_rdp(curve, k), DELTA) for k in counts])
    wins = search < composed
    crossover = int(np.argmax(wins))
    assert wins[crossover:].all(), f"the search beats composition at mean {counts[crossover]} but not after"
    assert counts[crossover] <= 8
    assert (not wins[0]) == composition_wins_at_2


def test_the_worst_candidate_bounds_the_search_and_adding_safer_ones_changes_nothing():
    low, high = dp_sgd_curve_of(1.1), dp_sgd_curve_of(2.0)
    np.testing.assert_array_equal(worst_case_rdp([high, low]), np.maximum(low, high))
    assert np.all(low >= high) and np.any(low > high)  # less noise, more privacy loss at every order
    distribution = TruncatedNegativeBinomial.with_mean(8)
    both = account_search([high, low], distribution, DELTA)
    alone = account_search([low], distribution, DELTA)
    assert both.epsilon_search == alone.epsilon_search
    assert both.epsilon_one_trial == alone.epsilon_one_trial
    assert account_search([high], distribution, DELTA).epsilon_search < alone.epsilon_search


def test_account_search_reports_the_three_epsilons_and_one_sentence(dp_sgd_curve):
    distribution = TruncatedNegativeBinomial.with_mean(8, eta=1.0)
    result = account_search([dp_sgd_curve], distribution, DELTA)
    assert result.epsilon_one_trial == epsilon_from_rdp(ORDERS, dp_sgd_curve, DELTA)
    assert result.epsilon_search == epsilon_from_rdp(ORDERS, tuned_rdp(ORDERS, dp_sgd_curve, distribution), DELTA)
    assert result.fixed_count == 8
    assert result.epsilon_composed_fixed == epsilon_from_rdp(ORDERS, 8 * dp_sgd_curve, DELTA)
    assert result.epsilon_one_trial < result.epsilon_search < result.epsilon_composed_fixed
    assert result.reason is None and result.theorem == "Theorem 2" and result.orders == ps.DEFAULT_ORDERS
    sentence = result.statement()
    assert sentence.endswith(".") and ". " not in sentence and f"{result.epsilon_search:.3g}" in sentence
    assert account_search([dp_sgd_curve], Poisson(8), DELTA).theorem == "Theorem 6"
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.epsilon_search = 0.0  # type: ignore[misc]


def test_module_docstring_example_runs():
    assert doctest.testmod(ps).failed == 0


# --- the distributions -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("eta", [0.5, 1.0, 2.0])
def test_truncated_negative_binomial_is_numpys_negative_binomial_without_zero(eta):
    # Definition 1 against scipy: nbinom(eta, gamma) conditioned on K >= 1.
    d = TruncatedNegativeBinomial.with_mean(8, eta=eta)
    ks = np.arange(1, 60)
    expected = stats.nbinom(eta, d.gamma).pmf(ks) / (1 - d.gamma ** eta)
    np.testing.assert_allclose([d.probability(int(k)) for k in ks], expected, rtol=1e-10)


def test_eta_zero_is_the_logarithmic_distribution():
    d = TruncatedNegativeBinomial.with_mean(8, eta=0.0)
    ks = np.arange(1, 60)
    np.testing.assert_allclose([d.probability(int(k)) for k in ks], stats.logser(1 - d.gamma).pmf(ks), rtol=1e-10)


@pytest.mark.parametrize("eta", [-0.9, -0.5, 0.0, 1e-9, 0.5, 1.0, 3.0])
@pytest.mark.parametrize("mean", [1.5, 8.0, 20.0])
def test_mean_solved_from_eta_is_the_mean_of_the_probabilities(eta, mean):
    # The closed-form E[K] (used in the bound's log E[K]) against the probabilities summed, for each eta regime
    # (heavy tail eta < 0, logarithmic, near-logarithmic, geometric, light tail); gamma is solved from the mean.
    d = TruncatedNegativeBinomial.with_mean(mean, eta=eta)
    assert d.mean == pytest.approx(mean, rel=1e-12)
    if eta == 1.0:
        assert d.gamma == 1 / mean  # geometric: E[K] = 1 / gamma
    ks = np.arange(1, 200_000, dtype=float)
    probabilities = np.exp(d._log_probabilities(ks))
    tail_bound = probabilities[-1] * (1 - d.gamma) / d.gamma * ks[-1]  # sum k (1-gamma)^k past the end, roughly
    assert probabilities.sum() == pytest.approx(1, abs=1e-9 + tail_bound)
    if d.gamma > 1e-4:  # a heavy tail with tiny gamma does not sum to its mean in 2e5 terms
        assert float((ks * probabilities).sum()) == pytest.approx(mean, rel=1e-9)


@pytest.mark.parametrize("distribution", [TruncatedNegativeBinomial.with_mean(8, eta=-0.5),
                                          TruncatedNegativeBinomial.with_mean(8, eta=0.0),
                                          TruncatedNegativeBinomial.with_mean(20, eta=1.0),
                                          Poisson(8), Poisson(20)], ids=repr)
def test_draws_average_to_the_stated_mean(distribution):
    rng = np.random.default_rng(20220425)
    draws = np.array([distribution.draw(rng) for _ in range(3000)])
    # Five standard errors of the sample: fails for a wrong sampler, passes by chance 1 - 6e-7 otherwise.
    assert abs(draws.mean() - distribution.mean) <= 5 * draws.std(ddof=1) / math.sqrt(draws.size)
    if isinstance(distribution, TruncatedNegativeBinomial):
        assert draws.min() >= 1  # truncated: K = 0 never happens
        ones = np.mean(draws == 1)
        p1 = distribution.probability(1)
        assert abs(ones - p1) <= 5 * math.sqrt(p1 * (1 - p1) / draws.size)
    else:
        assert np.mean(draws == 0) == pytest.approx(math.exp(-distribution.mu), abs=0.02)


def test_poisson_probabilities_are_scipys():
    d = Poisson(8)
    ks = np.arange(0, 40)
    np.testing.assert_allclose([d.probability(int(k)) for k in ks], stats.poisson(8).pmf(ks), rtol=1e-12)


# --- inf in, inf out -------------------------------------------------------------------------------------------


def test_a_non_private_trial_makes_everything_infinite_with_the_reason():
    assert np.all(np.isinf(trial_rdp(dp_accounting.NonPrivateDpEvent(), ORDERS)))
    assert np.all(np.isinf(trial_rdp([kinked_trial(), dp_accounting.NonPrivateDpEvent()], ORDERS)))
    for distribution in (TruncatedNegativeBinomial.with_mean(8), Poisson(8)):
        result = account_search([kinked_trial(), [dp_accounting.NonPrivateDpEvent()]], distribution, DELTA)
        assert math.isinf(result.epsilon_search)
        assert math.isinf(result.epsilon_one_trial) and math.isinf(result.epsilon_composed_fixed)
        assert "a trial is not private" in result.reason and "candidate 1 of 2" in result.reason
        assert result.statement().startswith("Not differentially private: a trial is not private")
        infinite = np.full(ORDERS.shape, np.inf)
        assert np.all(np.isinf(tuned_rdp(ORDERS, infinite, distribution)))
    assert math.isinf(epsilon_from_rdp(ORDERS, np.full(ORDERS.shape, np.inf), DELTA))
    assert np.all(np.isinf(worst_case_rdp([np.zeros(3), np.full(3, np.inf)])))


# --- bad parameters: ValueError, one sentence naming the value --------------------------------------------------


@pytest.mark.parametrize("call, shown", [
    (lambda: TruncatedNegativeBinomial(-1, 0.5), "-1"),
    (lambda: TruncatedNegativeBinomial(float("nan"), 0.5), "nan"),
    (lambda: TruncatedNegativeBinomial(1, 0.0), "0.0"),
    (lambda: TruncatedNegativeBinomial(1, 1), "1"),
    (lambda: TruncatedNegativeBinomial(True, 0.5), "True"),
    (lambda: TruncatedNegativeBinomial.with_mean(1.0), "1.0"),
    (lambda: TruncatedNegativeBinomial.with_mean(8, eta=-2), "-2"),
    (lambda: TruncatedNegativeBinomial.with_mean(1e9, eta=-0.99), "1000000000.0"),
    (lambda: Poisson(0.5), "0.5"),
    (lambda: Poisson(float("inf")), "inf"),
    (lambda: Poisson("8"), "'8'"),
    (lambda: trial_rdp([], ORDERS), "empty"),
    (lambda: trial_rdp(dp_accounting.NonPrivateDpEvent(), [0.5, 2.0]), "0.5"),
    (lambda: worst_case_rdp([]), "none"),
    (lambda: worst_case_rdp([np.zeros(3), np.zeros(4)]), "(4,)"),
    (lambda: tuned_rdp(ORDERS, np.full(ORDERS.shape, -1.0), Poisson(8)), "-1.0"),
    (lambda: tuned_rdp([2.0, 3.0], [0.1, float("nan")], Poisson(8)), "nan"),
    (lambda: tuned_rdp([2.0], [0.1], 8), "8"),
    (lambda: composed_rdp(np.zeros(3), 0), "0"),
    (lambda: composed_rdp(np.zeros(3), 2.5), "2.5"),
    (lambda: epsilon_from_rdp([2.0], [0.1], 0.0), "0.0"),
    (lambda: epsilon_from_rdp([2.0], [0.1], 1.5), "1.5"),
    (lambda: account_search([], Poisson(8), DELTA), "none"),
    (lambda: account_search([np.zeros(3)], Poisson(8), DELTA), "(3,)"),
])
def test_bad_parameters_raise_one_sentence_naming_the_value(call, shown):
    with pytest.raises(ValueError) as caught:
        call()
    message = str(caught.value)
    assert shown in message
    assert message.endswith(".") and ". " not in message, message
