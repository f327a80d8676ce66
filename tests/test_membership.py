import numpy as np
import pytest

from mnist_etc.privacy.attacks.hill_climb import compiled
from mnist_etc.privacy.membership import auc_interval, loss_threshold_attack, max_advantage, roc_auc


def test_auc_and_advantage_against_known_cases():
    assert roc_auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert roc_auc(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == 0.0
    assert roc_auc(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.5
    assert roc_auc(np.array([1.0, 3.0]), np.array([2.0, 0.0])) == 0.75
    assert max_advantage(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert max_advantage(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.0


def test_auc_matches_the_pairwise_definition():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.3, 1, 50).round(1), rng.normal(0, 1, 40).round(1)  # rounding makes ties
    pairwise = np.mean((a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :]))
    assert roc_auc(a, b) == pytest.approx(pairwise)


def test_loss_threshold_attack_on_a_trained_model(tiny_model, tiny_split):
    result = loss_threshold_attack(compiled(tiny_model.networks.full_model()), tiny_split, n=300)
    assert result.n_members == result.n_non_members == 300
    assert 0.0 <= result.advantage <= 1.0 and result.auc_low <= result.auc <= result.auc_high
    # A small model trained on 1,500 digits fits its members a little better than held-out digits.
    assert result.mean_member_loss <= result.mean_non_member_loss + 0.05


def test_auc_interval_holds_the_auc_and_narrows_with_more_examples():
    rng = np.random.default_rng(1)
    widths = []
    for n in (50, 800):
        a, b = rng.normal(0.5, 1, n), rng.normal(0, 1, n)
        low, high = auc_interval(a, b, seed=0)
        assert low < roc_auc(a, b) < high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2.5
    same = np.ones(100)
    assert auc_interval(same, same) == (0.5, 0.5)  # no signal at all: the interval is the point 0.5
