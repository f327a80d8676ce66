"""The one-run canary audit: its bounds, its scoring, its false-alarm rate by simulation, its canaries inside
DP-SGD, and real training runs on small data (correct, and with noise mis-scaled 2x)."""
import math

import numpy as np
import pytest

from mnist_etc.audit.canary import CanaryAuditConfig, run_canary_audit
from mnist_etc.audit.canary.bound import (eps_delta_inverse_blow_up, epsilon_lower_bound, fdp_epsilon_lower_bound,
                                          guesses, p_value, rejects_curve)
from mnist_etc.audit.canary.score import LikelihoodRatioScores, StageClaim, simulate
from mnist_etc.config import TrainConfig
from mnist_etc.dp.sgd import DPSGD, CanaryBlock, dp_rng, xent_per_example
from mnist_etc.errors import UserError
from mnist_etc.tf_quiet import tf


def test_bound_of_all_correct_guesses_has_its_closed_form():
    # r correct of r at delta 0: P[Binomial(r, q) = r] = q^r = 1 - confidence, q = e^eps / (1 + e^eps)
    for r in (20, 100, 400):
        q = 0.05 ** (1 / r)
        assert epsilon_lower_bound(1000, r, r, 0.0, 0.95) == pytest.approx(math.log(q / (1 - q)), rel=1e-6)


def test_bound_is_monotone_and_delta_only_weakens_it():
    lbs = [epsilon_lower_bound(1000, 200, v, 1e-5, 0.95) for v in (100, 120, 150, 180, 200)]
    assert lbs[0] == 0.0 and all(a <= b for a, b in zip(lbs, lbs[1:])) and lbs[-1] > 2
    assert epsilon_lower_bound(1000, 200, 170, 1e-3, 0.95) < epsilon_lower_bound(1000, 200, 170, 0.0, 0.95)
    assert p_value(1000, 200, 170, 1.0, 1e-3) > p_value(1000, 200, 170, 1.0, 0.0)


def _randomised_response(eps: float, m: int, rng: np.random.Generator):
    """The canonical eps-DP mechanism: each canary's score is its membership flipped w.p. 1 / (1 + e^eps)."""
    q = 1 / (1 + math.exp(-eps))
    included = rng.random(m) < 0.5
    says_in = np.where(rng.random(m) < q, included, ~included)
    return says_in + rng.random(m) * 0.1, included   # ties broken at random


@pytest.mark.parametrize("bound", ["steinke", "fdp"])
def test_bounds_are_valid_for_randomised_response_at_a_known_epsilon(bound):
    """Each bound must falsify a true epsilon at most 5% of the time, and see most of it when it is there."""
    eps, m, rng = 1.0, 1000, np.random.default_rng(0)
    lb = epsilon_lower_bound if bound == "steinke" else fdp_epsilon_lower_bound
    found = []
    for _ in range(60):
        scores, included = _randomised_response(eps, m, rng)
        r, v = guesses(scores, included, 100)
        found.append(lb(m, r, v, 0.0 if bound == "steinke" else 1e-6, 0.95))
    assert sum(f > eps for f in found) <= 6 and np.median(found) > 0.5


def test_guesses_take_the_k_highest_in_and_the_k_lowest_out():
    included = np.array([True, False, True, False, True, False])
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    assert guesses(scores, included, 1) == (2, 2)     # 5.0 in (right), 0.0 out (right)
    assert guesses(scores, included, 2) == (4, 2)     # 4.0 in (wrong), 1.0 out (wrong)
    assert guesses(scores, included, 10) == (6, 4)    # capped at m // 2 = 3 each side: 2 right of each 3


def test_eps_delta_inverse_blow_up_is_the_trade_off_curves():
    from mnist_etc.audit.bounds import TradeOffCurve

    for eps, delta in ((0.0, 1e-5), (1.3, 1e-5), (4.0, 0.01)):
        curve = TradeOffCurve(np.array([eps]), np.array([delta]))
        ours = eps_delta_inverse_blow_up(eps, delta)
        for y in np.linspace(0, 1, 41):
            assert ours(y) == pytest.approx(curve.inverse_blow_up(y), abs=1e-12)


def test_fdp_bound_is_tighter_than_steinke_with_many_canaries():
    # 100,000 canaries, 400 guesses, 384 right, delta 1e-5: Steinke pays 2 m delta = 2, the curve absorbs delta
    fdp, steinke = (b(100_000, 400, 384, 1e-5, 0.95) for b in (fdp_epsilon_lower_bound, epsilon_lower_bound))
    assert fdp > steinke + 0.5
    # with 1,000 canaries the delta term is small and the two agree to within the f-DP search's tolerance
    assert fdp_epsilon_lower_bound(1000, 200, 195, 1e-5, 0.95) == pytest.approx(
        epsilon_lower_bound(1000, 200, 195, 1e-5, 0.95), abs=0.02)
    assert fdp_epsilon_lower_bound(1000, 200, 100, 1e-5, 0.95) == 0.0


# The claimed mechanism in small: 60 steps of the Poisson-subsampled Gaussian (q 0.05, sigma 1), 4,000 canaries.
SMALL_CLAIM = [StageClaim("autoencoder", 0.05, 1.0, 60)]


def _small_curve():
    import dp_accounting

    from mnist_etc.audit.bounds import trade_off_curve

    step = dp_accounting.PoissonSampledDpEvent(0.05, dp_accounting.GaussianDpEvent(1.0))
    return trade_off_curve([dp_accounting.SelfComposedDpEvent(step, 60)])


def test_false_alarm_rate_of_the_audit_by_simulation():
    """Correct training (the claimed mechanism itself), scored and judged as the audit does (100 guesses "in"),
    100 times: the
    audit may contradict the accounting at most at its significance, 5% (here: <= 9 of 100, the 99% binomial
    quantile); and noise mis-scaled 2x is caught in at least 18 of 20 runs."""
    curve, rng, m, k = _small_curve(), np.random.default_rng(7), 4000, (100, 0)
    alarms = 0
    for _ in range(100):
        included = rng.random(m) < 0.5
        r, v = guesses(simulate(SMALL_CLAIM, included, rng), included, *k)
        alarms += rejects_curve(m, r, v, 0.95, curve)
    caught = 0
    for _ in range(20):
        included = rng.random(m) < 0.5
        r, v = guesses(simulate(SMALL_CLAIM, included, rng, noise_scale=0.5), included, *k)
        caught += rejects_curve(m, r, v, 0.95, curve)
    assert alarms <= 9 and caught >= 18, (alarms, caught)


def test_likelihood_ratio_score_orders_by_evidence():
    scorer = LikelihoodRatioScores(3, [StageClaim("autoencoder", 0.1, 1.0, 2), StageClaim("classifier", 1.0, 0.0, 1)])
    scorer.observe("autoencoder", np.array([2.0, 0.0, -2.0]))
    # log((1 - q) + q exp((x - 1/2) / sigma^2)) at x = 2, 0, -2
    expected = np.log(0.9 + 0.1 * np.exp(np.array([1.5, -0.5, -2.5])))
    np.testing.assert_allclose(scorer.scores, expected, rtol=1e-12)
    scorer.observe("classifier", np.array([0.0, 64.0, 0.0]))   # a non-private stage sees an included canary exactly
    assert np.isinf(scorer.scores[1]) and np.isfinite(scorer.scores[[0, 2]]).all()


@pytest.mark.parametrize("kwargs, sentence", [
    (dict(canaries=1), "canaries must be an integer in 2..10000000, got 1."),
    (dict(inclusion=1.0), "inclusion must be a number strictly between 0 and 1, got 1.0."),
    (dict(inclusion=0.3), "inclusion must be 0.5: the one-run bound (Steinke et al. 2023, Theorem 3)"),
    (dict(confidence=1.5), "confidence must be a number strictly between 0 and 1, got 1.5."),
])
def test_bad_canary_audit_settings(kwargs, sentence):
    with pytest.raises(UserError) as err:
        CanaryAuditConfig(**kwargs)
    assert sentence in str(err.value)


def _head_step(included, microbatches=None, path="ghost", norm=50.0):
    """One DP-SGD step of a Dense head with every example sampled (batch size = n), no noise, plain SGD at lr 1;
    the model's update (minus the clipped sum over the batch size) and what the canary block observed."""
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.layers.Input((4,)), tf.keras.layers.Dense(3)])
    before = np.concatenate([v.numpy().ravel() for v in model.trainable_variables])
    x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    y = np.arange(8) % 3
    seen = []
    block = None if included is None else CanaryBlock(np.asarray(included), norm, seen.append)
    dp = DPSGD(model, xent_per_example, tf.keras.optimizers.SGD(1.0), 1.0, 0.0, len(x), microbatches,
               dp_rng(0)[0], path=path, canaries=block)
    dp.step(x, y)
    return np.concatenate([v.numpy().ravel() for v in model.trainable_variables]) - before, seen


def test_a_sampled_canary_is_clipped_like_an_example_and_never_moves_the_model():
    plain, _ = _head_step(None)
    for path in ("ghost", "vectorised"):
        moved, seen = _head_step([True, False, True], path=path)
        np.testing.assert_allclose(moved, plain, atol=1e-6)   # the block is never applied to the model
        # every included canary sampled (q = 1), norm 50 clipped to C = 1, observed in units of C
        np.testing.assert_allclose(seen[0], [1.0, 0.0, 1.0], atol=1e-6)


def test_a_canary_in_a_microbatch_is_clipped_with_the_real_examples_of_its_microbatch():
    # one microbatch holding 8 real examples and one canary of norm 1e6: the mean is the canary's (/9), clipped to
    # C = 1 together, so the block sees almost all of C and the model's weights almost nothing
    moved, seen = _head_step([True], microbatches=1, path="vectorised", norm=1e6)
    assert seen[0][0] == pytest.approx(1.0, abs=1e-4) and np.linalg.norm(moved) < 1e-3
    # a canary of norm 9 (mean 1 on its coordinate) shares the clip with the real mean: less than C reaches it
    _, seen = _head_step([True], microbatches=1, path="vectorised", norm=9.0)
    assert 0.3 < seen[0][0] < 1.0


# Real training on small data (the conftest's digits, hid_dim 16, batch 32).
SMALL = dict(hid_dim=16, ae_epochs=2, clf_epochs=6, batch_size=32)


def test_without_noise_every_included_canary_is_seen(tiny_split):
    """Both stages non-private: nothing trains (nothing about the canaries would depend on it) and every included
    canary is seen exactly; the bound is as large as 2k right guesses allow, against accounted infinity."""
    rec = run_canary_audit(TrainConfig(**SMALL), tiny_split, CanaryAuditConfig(canaries=2000), progress=False)
    assert rec["correct"] == rec["guesses"] == rec["k_in"] + rec["k_out"] > 0 and rec["epsilon_lb"] > 3
    assert rec["consistent"] and math.isinf(rec["accounted_epsilon"]) and rec["canary_auc"] == 1.0


@pytest.mark.slow
def test_correct_training_is_consistent_and_noise_mis_scaled_2x_is_caught(tiny_split):
    """The same configuration twice, with the default 100,000 canaries: as accounted, and with half the
    accounted noise actually added."""
    cfg = TrainConfig(**SMALL, ae_noise_multiplier=1.0, clf_noise_multiplier=1.0)
    rec = run_canary_audit(cfg, tiny_split, CanaryAuditConfig(), progress=False)
    assert rec["consistent"] and not rec["rejects_accounted"] and rec["catches_2x"]
    assert 0 < rec["epsilon_lb"] < rec["accounted_epsilon"]
    assert rec["steps_observed"]["autoencoder"] > 0 and rec["steps_observed"]["classifier"] > 0
    bug = run_canary_audit(cfg, tiny_split, CanaryAuditConfig(), progress=False, train_noise_scale=0.5)
    assert bug["rejects_accounted"] and not bug["consistent"] and "deliberate_bug" in bug
