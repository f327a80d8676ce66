"""mnist_etc.audit.bounds: each bound against an independent computation, a cited figure, or a seeded simulation
of a mechanism whose privacy is known exactly."""
import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting import pld
from scipy import stats

from mnist_etc.audit import bounds

KAPPA = 1 / 51   # identify the target among 51 same-class candidates

from mnist_etc.audit.canary import bound as steinke   # light: the canary package exports lazily


def stage_event(n_train, batch_size, epochs, noise_multiplier):
    """One DP-SGD stage as mnist_etc.dp.accounting.stage_event builds it (per-example clipping), restated
    here because that module imports TensorFlow."""
    q = batch_size / n_train
    step = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(noise_multiplier))
    return dp_accounting.SelfComposedDpEvent(step, epochs * (n_train // batch_size))


# --------------------------------------------------------------------------------------- 1. membership

@pytest.mark.parametrize("eps", [0.0, 0.405, 1.0, 3.12, 8.0])
def test_pure_dp_max_auc_is_the_area_under_the_best_pure_dp_roc(eps):
    # Independent: integrate the ROC TPR = 1 - f(FPR) of f_{eps,0}(a) = max(0, 1 - e^eps a, e^-eps (1 - a))
    # numerically (Kairouz, Oh, Viswanath 2015).
    from scipy import integrate

    def tpr(a):
        return 1 - max(0.0, 1 - math.exp(eps) * a, math.exp(-eps) * (1 - a))

    area, _ = integrate.quad(tpr, 0, 1, points=[1 / (1 + math.exp(eps))], epsabs=1e-12)
    assert bounds.pure_dp_max_auc(eps) == pytest.approx(area, abs=1e-9)
    assert bounds.pure_dp_epsilon_for_auc(bounds.pure_dp_max_auc(eps)) == pytest.approx(eps, abs=1e-9)


def test_the_default_auc_bound_is_that_of_pure_eps_log_1_5():
    from mnist_etc.audit.config import AuditConfig

    assert bounds.pure_dp_epsilon_for_auc(AuditConfig().membership_auc_bound) == pytest.approx(math.log(1.5))
    assert bounds.pure_dp_max_auc(3.12) == pytest.approx(0.958, abs=1e-3)   # the "about 0.96"


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (37, 120), (120, 120)])
def test_clopper_pearson_bounds_are_where_the_binomial_tail_equals_the_error(k, n):
    # Independent characterisation: the lower bound L has P[Bin(n, L) >= k] = 1 - c, the upper U has
    # P[Bin(n, U) <= k] = 1 - c (Clopper & Pearson 1934), checked with scipy's binomial, not the beta quantile.
    c = 0.9
    low, high = bounds.clopper_pearson_lower(k, n, c), bounds.clopper_pearson_upper(k, n, c)
    if k == 0:
        assert low == 0.0
        assert high == pytest.approx(1 - (1 - c) ** (1 / n), rel=1e-12)   # hand-worked: (1 - U)^n = 1 - c
    else:
        assert stats.binom.sf(k - 1, n, low) == pytest.approx(1 - c, rel=1e-8)
    if k == n:
        assert high == 1.0
        assert low == pytest.approx((1 - c) ** (1 / n), rel=1e-12)         # hand-worked: L^n = 1 - c
    else:
        assert stats.binom.cdf(k, n, high) == pytest.approx(1 - c, rel=1e-8)
    assert low <= k / n <= high


def test_membership_bound_hand_worked_perfect_attack():
    # All 50 members flagged, no non-member flagged. Each one-sided bound at 1 - 0.05 / 2 = 0.975:
    # TPR_low = 0.025^(1/50), FPR_high = 1 - 0.025^(1/50); both sides give the same ratio by symmetry.
    n, delta = 50, 1e-3
    b = bounds.membership_epsilon_bound(n, n, 0, n, confidence=0.95, delta=delta)
    edge = 0.025 ** (1 / n)
    assert b.per_bound_confidence == pytest.approx(0.975)
    assert b.tpr_low == pytest.approx(edge, rel=1e-12)
    assert b.fpr_high == pytest.approx(1 - edge, rel=1e-12)
    assert b.epsilon_lb == pytest.approx(math.log((edge - delta) / (1 - edge)), rel=1e-10)
    assert (b.true_positives, b.members, b.false_positives, b.non_members) == (n, n, 0, n)
    with pytest.raises(Exception):
        b.epsilon_lb = 0.0   # frozen


def test_membership_bound_takes_the_better_side():
    # Few false positives: the TPR/FPR ratio carries the evidence. Few false negatives: TNR/FNR does.
    one = bounds.membership_epsilon_bound(60, 100, 0, 100, confidence=0.95)
    two = bounds.membership_epsilon_bound(100, 100, 40, 100, confidence=0.95)
    for b, side in ((one, "tpr/fpr"), (two, "tnr/fnr")):
        # Clopper-Pearson from scipy's beta quantiles, each at 1 - 0.05 / 2.
        tpr_low = stats.beta.ppf(0.025, b.true_positives, b.members - b.true_positives + 1)
        fpr_high = stats.beta.ppf(0.975, b.false_positives + 1, b.non_members - b.false_positives)
        expected = max(math.log(tpr_low / fpr_high), math.log((1 - fpr_high) / (1 - tpr_low)))
        assert b.side == side
        assert b.epsilon_lb == pytest.approx(expected, rel=1e-10)


def test_membership_bound_is_zero_without_signal():
    b = bounds.membership_epsilon_bound(50, 100, 50, 100, confidence=0.95)
    assert (b.epsilon_lb, b.side) == (0.0, "none")
    # delta eats the whole TPR: nothing shown either.
    assert bounds.membership_epsilon_bound(3, 100, 0, 100, delta=0.5).epsilon_lb == 0.0


def test_membership_bound_holds_for_randomised_response_at_known_epsilon():
    # Randomised response at eps: the output equals the membership bit with probability e^eps / (1 + e^eps), and
    # the attack "guess member when the output says so" has TPR = q, FPR = 1 - q, ln(TPR / FPR) = eps exactly:
    # the mechanism is eps-DP and no bound may exceed eps more often than 1 - confidence.
    eps, n, runs, confidence = 1.0, 200, 1000, 0.9
    q = math.exp(eps) / (1 + math.exp(eps))
    rng = np.random.default_rng(20240611)
    tps, fps = rng.binomial(n, q, runs), rng.binomial(n, 1 - q, runs)
    lbs = np.array([bounds.membership_epsilon_bound(int(tp), n, int(fp), n, confidence).epsilon_lb
                    for tp, fp in zip(tps, fps)])
    allowed = stats.binom.ppf(0.999, runs, 1 - confidence)   # 1 - confidence of the runs, with slack
    assert np.sum(lbs > eps) <= allowed
    assert np.median(lbs) > 0.4 * eps                      # it has power, so the check above can bite
    naive = np.log(tps / fps)                              # the point estimate overshoots about half the time
    assert np.mean(naive > eps) > 0.3


# --------------------------------------------------------------------------------- Gaussian DP helpers

@pytest.mark.parametrize("mu", [0.5, 1.0, 2.0])
def test_gdp_epsilon_agrees_with_the_pld_of_the_gaussian_mechanism(mu):
    # A Gaussian mechanism with sensitivity 1 and noise 1/mu is exactly mu-GDP; dp_accounting's PLD epsilon is
    # pessimistic by at most its discretisation.
    delta = 1e-5
    eps = bounds.gdp_epsilon(mu, delta)
    accountant = pld.PLDAccountant(value_discretization_interval=1e-3)
    accountant.compose(dp_accounting.GaussianDpEvent(1 / mu))
    assert eps <= accountant.get_epsilon(delta) <= eps + 5e-3
    assert bounds.gdp_delta(mu, eps) == pytest.approx(delta, rel=1e-8)


# --------------------------------------------------------------------------------- 2. reconstruction

@pytest.mark.parametrize("mu", [0.0, 0.3, 1.0, 3.0])
def test_gdp_reconstruction_bound_is_one_minus_the_trade_off(mu):
    b = bounds.reconstruction_bound_gdp(mu, KAPPA)
    assert b.success_bound == pytest.approx(1 - bounds.gaussian_trade_off(mu, KAPPA), abs=1e-14)
    assert b.success_bound == pytest.approx(stats.norm.cdf(stats.norm.ppf(KAPPA) + mu), rel=1e-12)
    assert b.success_bound >= KAPPA - 1e-15


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0, 5.0])
def test_pld_route_matches_the_gdp_closed_form_for_a_plain_gaussian(sigma):
    # Tolerance 1e-5: the PLD rounds each privacy loss up by at most its discretisation (1e-3) and the eps grid
    # has finite steps; both can only lower f (raise the bound) and move it by well under 1e-5 here, while a
    # wrong formula (wrong adjacency, missing branch, kappa for 1 - kappa) is off by more than 1e-3.
    exact = bounds.reconstruction_bound_gdp(1 / sigma, KAPPA).success_bound
    via_pld = bounds.reconstruction_bound_from_events([dp_accounting.GaussianDpEvent(sigma)], KAPPA).success_bound
    assert exact - 1e-12 <= via_pld <= exact + 1e-5


def test_reconstruction_bound_is_kappa_at_zero_privacy_loss():
    assert bounds.reconstruction_bound_gdp(0.0, KAPPA).success_bound == pytest.approx(KAPPA, rel=1e-12)
    # Sampling probability 0: no record ever touches the output, the privacy loss is identically 0.
    untouched = dp_accounting.PoissonSampledDpEvent(0.0, dp_accounting.GaussianDpEvent(1.0))
    b = bounds.reconstruction_bound_from_events([untouched], KAPPA)
    assert b.success_bound == pytest.approx(KAPPA, abs=1e-12)
    huge_noise = bounds.reconstruction_bound_from_events([dp_accounting.GaussianDpEvent(1e4)], KAPPA)
    assert KAPPA <= huge_noise.success_bound <= KAPPA + 1e-4


def test_reconstruction_bound_rises_to_one_as_noise_vanishes():
    # A coarse discretisation (1e-2) keeps this fast; it is still pessimistic, so still a valid bound.
    sigmas = [4.0, 1.0, 0.5, 0.2, 0.1]
    got = [bounds.reconstruction_bound_from_events([dp_accounting.GaussianDpEvent(s)], KAPPA,
                                                   discretisation=1e-2).success_bound
           for s in sigmas]
    assert all(KAPPA <= a < b for a, b in zip(got, got[1:]))
    assert got[-1] > 0.999


def test_non_private_events_give_no_bound():
    for events in ([dp_accounting.NonPrivateDpEvent()],
                   [stage_event(600, 32, 1, 1.0), dp_accounting.NonPrivateDpEvent()],
                   [dp_accounting.GaussianDpEvent(0.0)]):
        b = bounds.reconstruction_bound_from_events(events, KAPPA)
        assert b.success_bound is None and "no bound" in b.reason
    b = bounds.reconstruction_bound_gdp(math.inf, KAPPA)
    assert b.success_bound is None and "no bound" in b.reason
    assert bounds.trade_off_curve([dp_accounting.NonPrivateDpEvent()]) is None


def test_replace_one_is_group_privacy_of_add_remove():
    # For a plain Gaussian, group privacy of two add/remove steps is exactly 2 mu-GDP.
    sigma = 2.0
    b = bounds.reconstruction_bound_from_events([dp_accounting.GaussianDpEvent(sigma)], KAPPA,
                                                adjacency="replace_one")
    exact = bounds.reconstruction_bound_gdp(1 / sigma, KAPPA, adjacency="replace_one").success_bound
    assert exact == pytest.approx(stats.norm.cdf(stats.norm.ppf(KAPPA) + 2 / sigma), rel=1e-12)
    assert exact - 1e-12 <= b.success_bound <= exact + 1e-5


def test_dp_sgd_events_give_a_bound_between_kappa_and_one():
    events = [stage_event(600, 32, 2, 1.1), stage_event(600, 32, 4, 1.1)]   # as accounting.py builds them
    add_remove = bounds.reconstruction_bound_from_events(events, KAPPA, discretisation=1e-2)
    replace = bounds.reconstruction_bound_from_events(events, KAPPA, adjacency="replace_one", discretisation=1e-2)
    assert KAPPA < add_remove.success_bound < replace.success_bound < 1
    # A harder task (smaller kappa) has a lower ceiling.
    harder = bounds.reconstruction_bound_from_events(events, 1 / 500, discretisation=1e-2)
    assert harder.success_bound < add_remove.success_bound


def test_trade_off_curve_inverse_blow_up_inverts_the_blow_up():
    curve = bounds.trade_off_curve([stage_event(600, 32, 2, 1.1)], discretisation=1e-2)
    for y in (0.01, 0.05, 0.2, 0.5, 0.9):
        x = curve.inverse_blow_up(y)
        assert curve.blow_up(x) == pytest.approx(y, abs=1e-9)
    # f is a trade-off function: non-increasing, at most 1 - alpha.
    alphas = np.linspace(0, 1, 41)
    fs = [curve.f(a) for a in alphas]
    assert all(a >= b - 1e-15 for a, b in zip(fs, fs[1:]))
    assert all(f <= 1 - a + 1e-15 for f, a in zip(fs, alphas))


# ---------------------------------------------------------------------------------- 3. f-DP in one run

def _deterministic_normal(mu, n):
    # As jax_privacy's tests/auditing_test.py: the n quantiles of N(mu, 1) at (i + 1/2) / n.
    return stats.norm.ppf(np.linspace(0, 1, n, endpoint=False) + 1 / (2 * n)) + mu


@pytest.mark.parametrize("shift,guesses,correct,thresholds,expected", [
    (1, 406, 379, 386, 2.164749),
    (2, 938, 934, 374, 4.7218075),
    (4, 5436, 5436, 140, 9.133752),
])
def test_reproduces_jax_privacy_one_run_fdp_figures(shift, guesses, correct, thresholds, expected):
    # Source: google-deepmind/jax_privacy, tests/auditing_test.py, test_epsilon_one_run_close ('one_fdp',
    # 'two_fdp', 'four_fdp'; commit 8967688): 10,000 in- and 10,000 out-canary scores (deterministic normals,
    # shifted by `shift`), significance 0.05 Bonferroni-split over the ROC's convex-hull thresholds, delta 1e-6,
    # expected epsilon to rtol 1e-5. The winning threshold (guesses, correct) and the number of thresholds were
    # read off by running jax_privacy/auditing.py on those inputs; here we only check that the counts occur
    # in those scores and recompute the bound with our own code.
    in_scores, out_scores = _deterministic_normal(shift, 10_000), _deterministic_normal(0, 10_000)
    true_pos = np.searchsorted(np.sort(-in_scores), -in_scores, side="right")      # in-scores >= each in-score
    false_pos = np.searchsorted(np.sort(-out_scores), -in_scores, side="right")    # out-scores >= it
    assert np.any((true_pos == correct) & (false_pos == guesses - correct))
    b = bounds.one_run_fdp_bound(20_000, guesses, correct, delta=1e-6, confidence=1 - 0.05 / thresholds)
    assert b.epsilon_lb == pytest.approx(expected, rel=1e-5)


def test_at_mu_zero_the_fdp_test_is_a_slightly_conservative_binomial_test():
    # mu = 0 is perfect privacy: the output carries nothing, every guess is a fair coin and the number right is
    # exactly Binomial(r, 1/2). So the test may reject only where the binomial tail is <= tau (validity), and
    # it should reject where the tail is well below tau (power; 0.7 tau on this grid).
    no_privacy_loss = bounds.gaussian_inverse_blow_up(0.0)
    for tau in (0.05, 0.2):
        for m in (20, 60):
            for r in range(1, m + 1, 3):
                for v in range(r + 1):
                    rejects = bounds.one_run_fdp_rejects(m, r, v, 1 - tau, no_privacy_loss)
                    tail = stats.binom.sf(v - 1, r, 0.5)
                    assert not (rejects and tail > tau), (m, r, v, tau)
                    assert rejects or tail > 0.7 * tau, (m, r, v, tau)


def test_fdp_bound_grows_with_correct_guesses_and_rejections_form_an_interval():
    m, r, confidence = 500, 60, 0.95
    mus = [bounds.one_run_fdp_mu_lower_bound(m, r, v, confidence) for v in range(r + 1)]
    assert all(a <= b for a, b in zip(mus, mus[1:])) and mus[0] == 0.0 < mus[-1]
    top = mus[-1]
    for mu in np.linspace(0, 2 * top, 41):
        rejects = bounds.one_run_fdp_rejects(m, r, r, confidence, bounds.gaussian_inverse_blow_up(mu))
        assert rejects == (mu <= top)


def test_fdp_bound_holds_for_the_gaussian_mechanism_at_known_mu():
    # The idealised one-run game: each of m canaries is in with probability 1/2, the auditor sees
    # N(mu * in, 1) per canary (exactly mu-GDP for each canary) and guesses "in" for the k highest and "out" for
    # the k lowest. A valid bound exceeds mu in at most 1 - confidence of the runs.
    mu, m, k, runs, confidence = 0.5, 200, 20, 400, 0.9
    rng = np.random.default_rng(7)
    included = rng.random((runs, m)) < 0.5
    order = np.argsort(rng.standard_normal((runs, m)) + mu * included, axis=1)
    correct = (np.take_along_axis(included, order[:, -k:], 1).sum(1)
               + (~np.take_along_axis(included, order[:, :k], 1)).sum(1))
    by_count = {int(v): bounds.one_run_fdp_mu_lower_bound(m, 2 * k, int(v), confidence) for v in set(correct)}
    lbs = np.array([by_count[int(v)] for v in correct])
    assert np.sum(lbs > mu) <= stats.binom.ppf(0.999, runs, 1 - confidence)
    assert np.median(lbs) > 0.2 * mu   # it has power


def test_accounted_curve_of_a_gaussian_is_rejected_like_the_closed_form():
    # The generic route (inverse blow-up of a PLD trade-off curve) against the Gaussian closed form.
    m, r, v, confidence = 1000, 100, 97, 0.95
    mu_lb = bounds.one_run_fdp_mu_lower_bound(m, r, v, confidence)
    for factor, rejected in ((0.9, True), (1.1, False)):
        curve = bounds.trade_off_curve([dp_accounting.GaussianDpEvent(1 / (factor * mu_lb))])
        assert bounds.one_run_fdp_rejects(m, r, v, confidence, curve.inverse_blow_up) == rejected


@pytest.mark.parametrize("r,expected", [(100, 3.49), (1000, 5.81)])
def test_all_correct_caps(r, expected):
    # Steinke's cap: at eps = cap, r of r right has probability exactly 0.05 for randomised response
    # (P[Bin(r, q) = r] = q^r), and the project's Theorem 3 code (delta = 0) lands on it; the brief quotes 3.49
    # and 5.81.
    cap = bounds.steinke_all_correct_cap(r, 0.95)
    assert cap == pytest.approx(expected, abs=5e-3)
    assert stats.binom.sf(r - 1, r, 1 / (1 + math.exp(-cap))) == pytest.approx(0.05, rel=1e-9)
    assert steinke.epsilon_lower_bound(10 * r, r, r, 0.0, 0.95) == pytest.approx(cap, abs=1e-6)
    # The f-DP cap is the bound at v = r: no v < r shows more, and it depends on m (the r most telling of more
    # canaries make a perfect score less surprising), which Steinke's does not.
    small, large = (bounds.one_run_fdp_all_correct_cap(m, r, 1e-5, 0.95) for m in (10 * r, 100 * r))
    assert small.mu_lb > large.mu_lb > 0
    assert all(bounds.one_run_fdp_bound(10 * r, r, v, 1e-5, 0.95).mu_lb <= small.mu_lb
               for v in (r - 1, r - 5, r - r // 10))


def test_fdp_cap_is_not_reached_by_chance_at_the_cap():
    # At mu equal to the cap, the best perfect-score strategy (guess the r highest of m "in") must succeed with
    # probability at most 1 - confidence; simulated, seeded.
    m, r, runs = 100, 10, 3000
    cap = bounds.one_run_fdp_all_correct_cap(m, r, 1e-5, 0.95).mu_lb
    rng = np.random.default_rng(11)
    included = rng.random((runs, m)) < 0.5
    top = np.argsort(rng.standard_normal((runs, m)) + cap * included, axis=1)[:, -r:]
    perfect = np.take_along_axis(included, top, 1).all(1).mean()
    assert perfect <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / runs)


# ------------------------------------------------------------------------------------------ bad inputs

@pytest.mark.parametrize("call,match", [
    (lambda: bounds.membership_epsilon_bound(11, 10, 0, 10), "true_positives"),
    (lambda: bounds.membership_epsilon_bound(1, 0, 0, 10), "members"),
    (lambda: bounds.membership_epsilon_bound(1, 10, -1, 10), "false_positives"),
    (lambda: bounds.membership_epsilon_bound(1, 10, 0, 10, confidence=1.0), "confidence"),
    (lambda: bounds.membership_epsilon_bound(1, 10, 0, 10, delta=1.0), "delta"),
    (lambda: bounds.membership_epsilon_bound(1.5, 10, 0, 10), "true_positives"),
    (lambda: bounds.reconstruction_bound_gdp(-1.0, KAPPA), "mu"),
    (lambda: bounds.reconstruction_bound_gdp(1.0, 0.0), "kappa"),
    (lambda: bounds.reconstruction_bound_gdp(1.0, KAPPA, adjacency="swap"), "adjacency"),
    (lambda: bounds.reconstruction_bound_from_events(dp_accounting.GaussianDpEvent(1.0), KAPPA), "events"),
    (lambda: bounds.reconstruction_bound_from_events([dp_accounting.UnsupportedDpEvent()], KAPPA), "events"),
    (lambda: bounds.one_run_fdp_bound(100, 10, 11, 1e-5, 0.95), "v <= r <= m"),
    (lambda: bounds.one_run_fdp_bound(100, 101, 1, 1e-5, 0.95), "v <= r <= m"),
    (lambda: bounds.one_run_fdp_bound(100, 10, 5, 0.0, 0.95), "delta"),
    (lambda: bounds.steinke_all_correct_cap(0, 0.95), "r"),
    (lambda: bounds.gdp_epsilon(1.0, 1.5), "delta"),
])
def test_bad_inputs_raise_value_error_naming_the_value(call, match):
    with pytest.raises(ValueError, match=match):
        call()
