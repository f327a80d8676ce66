"""The one-run canary audit: its bound, its canaries inside DP-SGD, and real training runs on small data."""
import math

import numpy as np
import pytest

from mnist_etc.config import TrainConfig
from mnist_etc.errors import UserError
from mnist_etc.audit.canary import CanaryAuditConfig, run_canary_audit
from mnist_etc.audit.canary.bound import epsilon_lower_bound, guess_counts, one_run_bound, p_value
from mnist_etc.dp.sgd import DPSGD, GradientCanaries, dp_rng, xent_per_example
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


def test_bound_is_valid_for_randomised_response_at_a_known_epsilon():
    """The bound must falsify a true epsilon at most 5% of the time: simulate the canonical eps-DP mechanism
    (each canary's score is its membership flipped with probability 1 / (1 + e^eps))."""
    eps, m, rng = 1.0, 1000, np.random.default_rng(0)
    q = 1 / (1 + math.exp(-eps))
    rejected = 0
    for _ in range(60):
        included = rng.random(m) < 0.5
        says_in = np.where(rng.random(m) < q, included, ~included)
        scores = says_in + rng.random(m) * 0.1  # ties broken at random
        rejected += one_run_bound(scores, included, 0.0, 0.95).epsilon_lb > eps
    assert rejected <= 6
    # ... and it does see most of that epsilon when the scores are that informative
    assert one_run_bound(scores, included, 0.0, 0.95).epsilon_lb > 0.5


def test_guess_grid_and_bonferroni():
    assert guess_counts(1000) == [10, 20, 50, 100, 200, 500] and guess_counts(2) == [1]
    included = np.arange(100) < 50
    perfect = one_run_bound(included.astype(float), included, 0.0, 0.95)
    # all 100 guesses right; the grid's 6 guess counts (k = 1, 2, 5, 10, 20, 50) cost confidence: 1 - 0.05 / 6
    assert guess_counts(100) == [1, 2, 5, 10, 20, 50]
    q = (0.05 / 6) ** (1 / 100)
    assert perfect.correct == perfect.guesses == 100
    assert perfect.epsilon_lb == pytest.approx(math.log(q / (1 - q)), rel=1e-6)


@pytest.mark.parametrize("kwargs, sentence", [
    (dict(canaries=1), "canaries must be an integer >= 2, got 1."),
    (dict(inclusion=1.0), "inclusion must be a number strictly between 0 and 1, got 1.0."),
    (dict(inclusion=0.3), "inclusion must be 0.5: the one-run bound (Steinke et al. 2023, Theorem 3)"),
    (dict(confidence=1.5), "confidence must be a number strictly between 0 and 1, got 1.5."),
])
def test_bad_canary_audit_settings(kwargs, sentence):
    with pytest.raises(UserError) as err:
        CanaryAuditConfig(**kwargs)
    assert sentence in str(err.value)


def _head_step(canaries, microbatches=None, path="ghost"):
    """One DP-SGD step of a Dense head with every example sampled, no noise, plain SGD at lr 1: the update is
    minus the clipped sum divided by the batch size."""
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.layers.Input((4,)), tf.keras.layers.Dense(3)])
    before = np.concatenate([v.numpy().ravel() for v in model.trainable_variables])
    x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    y = np.arange(8) % 3
    n = len(x) + (len(canaries) if canaries is not None else 0)
    dp = DPSGD(model, xent_per_example, tf.keras.optimizers.SGD(1.0), 1.0, 0.0, n, microbatches,
               dp_rng(0)[0], path=path, canaries=canaries)
    dp.step(x, y)
    return np.concatenate([v.numpy().ravel() for v in model.trainable_variables]) - before, n


def test_a_sampled_canary_is_clipped_like_an_example_and_moves_only_its_weight():
    plain, _ = _head_step(None)
    canaries = GradientCanaries(np.array([2, 7]), np.array([1.0, -1.0]), norm=50.0)
    for path in ("ghost", "vectorised"):
        moved, n = _head_step(canaries, path=path)
        diff = moved * n - plain * 8   # undo the division by each run's batch size
        expected = np.zeros_like(diff)
        expected[[2, 7]] = [-1.0, 1.0]   # minus the clipped canary gradient: norm 50 clipped to C = 1
        np.testing.assert_allclose(diff, expected, atol=1e-5)


def test_a_canary_in_a_microbatch_enters_before_the_microbatch_is_clipped():
    canaries = GradientCanaries(np.array([5]), np.array([1.0]), norm=1e6)
    moved, n = _head_step(canaries, microbatches=1, path="vectorised")
    # one microbatch holding everything: its mean is dominated by the canary, then clipped to C = 1
    update = -moved * 1   # divided by the number of microbatches (1), lr 1
    assert update[5] == pytest.approx(1.0, abs=1e-3) and np.linalg.norm(update) == pytest.approx(1.0, abs=1e-4)


# Real training on small data (the conftest's 1,500 digits, hid_dim 16, batch 32), 1,000 canaries.
SMALL = dict(hid_dim=16, ae_epochs=3, clf_epochs=8, batch_size=32)


@pytest.mark.slow
def test_without_noise_the_canary_audit_proves_epsilon_above_one(tiny_split):
    rec = run_canary_audit(TrainConfig(**SMALL), tiny_split, CanaryAuditConfig(), progress=False)
    assert rec["epsilon_lb"] > 1.0 and rec["consistent"] and math.isinf(rec["accounted_epsilon"])
    assert rec["canaries"] == 1000 and 400 < rec["included"] < 600 and rec["canary_auc"] > 0.7


@pytest.mark.slow
def test_with_large_noise_the_bound_stays_below_the_accounted_epsilon(tiny_split):
    cfg = TrainConfig(**SMALL, ae_noise_multiplier=3.0, clf_noise_multiplier=3.0, insecure_seeded_dp=True)
    rec = run_canary_audit(cfg, tiny_split, CanaryAuditConfig(), progress=False)
    assert rec["consistent"] and rec["epsilon_lb"] < rec["accounted_epsilon"] < 2


@pytest.mark.slow
def test_mis_scaled_noise_is_caught(tiny_split):
    """The deliberate bug: accounted at noise 10 (a small epsilon), trained with a hundredth of that noise."""
    cfg = TrainConfig(**SMALL, ae_noise_multiplier=10.0, clf_noise_multiplier=10.0, insecure_seeded_dp=True)
    rec = run_canary_audit(cfg, tiny_split, CanaryAuditConfig(), progress=False, train_noise_scale=0.01)
    assert not rec["consistent"] and rec["epsilon_lb"] > rec["accounted_epsilon"] and "deliberate_bug" in rec
