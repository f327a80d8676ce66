import numpy as np
import pytest

from mnist_etc.audit.attacks.hill_climb import compiled
from mnist_etc.audit.membership import auc_interval, loss_threshold_attack, max_advantage, roc_auc


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
    assert -1.0 <= result.advantage <= 1.0 and result.auc_low <= result.auc <= result.auc_high
    assert 0.0 <= result.p_value <= 1.0 and 0.0 <= result.tpr_at_0_1pct_fpr <= result.tpr_at_1pct_fpr <= 1.0
    # A small model trained on 1,500 digits fits its members a little better than held-out digits; the record
    # publishes no aggregate of members but the test's statistics (no mean member loss).
    assert result.auc >= 0.45 and not any("loss" in key for key in result.as_dict())


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


def test_low_fpr_tpr_split_half_advantage_and_p_value():
    from mnist_etc.audit.membership import membership_statistics, split_half_advantage, tpr_at_fpr

    members, non = np.arange(10, 20, dtype=float), np.arange(0, 1000, dtype=float) / 100  # non-members in [0, 10)
    # 0.1% of 1000 non-members = 1 false positive allowed: threshold at the second-highest non-member score
    assert tpr_at_fpr(members, non, 0.001) == 1.0
    assert tpr_at_fpr(np.array([9.985, 20.0]), non, 0.0) == 0.5   # FPR 0: only above every non-member
    rng = np.random.default_rng(0)
    # Under the null, the split-half advantage is unbiased (the in-sample maximum is not).
    null = [split_half_advantage(rng.normal(size=300), rng.normal(size=300), seed=s) for s in range(40)]
    assert abs(np.mean(null)) < 0.02
    stats = membership_statistics(rng.normal(0.4, 1, 400), rng.normal(0, 1, 400))
    assert stats["p_value"] < 1e-6 and stats["auc_low"] > 0.55 and 0 < stats["advantage"] <= stats["advantage_in_sample"] + 0.1
    same = membership_statistics(rng.normal(size=400), rng.normal(size=400))
    assert same["p_value"] > 0.01 and same["auc_low"] < 0.5 < same["auc_high"]


def test_logit_confidence_is_log_odds_of_the_true_class():
    from mnist_etc.audit.membership import logit_confidence

    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = np.log(p[[0, 1], [0, 2]] / (1 - p[[0, 1], [0, 2]]))
    np.testing.assert_allclose(logit_confidence(logits, np.array([0, 2])), expected)


def test_membership_epsilon_from_synthetic_scores():
    from mnist_etc.audit.bounds import membership_epsilon_bound
    from mnist_etc.audit.membership import split_half_epsilon

    rng = np.random.default_rng(3)
    # Strongly separable: every member above every non-member. On 250 + 250 held-out examples, all right, the
    # bound is log((TPR_low - delta) / FPR_high) with each at 97.5%: TPR_low = 0.025^(1/250) = 0.98535,
    # FPR_high = 1 - 0.98535, so log((0.98535 - 1e-5) / 0.014647) = 4.209.
    strong = split_half_epsilon(rng.normal(10, 1, 500), rng.normal(0, 1, 500), seed=0, delta=1e-5)
    assert strong["true_positives"] == 250 and strong["false_positives"] == 0
    assert strong["epsilon_lb"] == pytest.approx(membership_epsilon_bound(250, 250, 0, 250, 0.95, 1e-5).epsilon_lb)
    assert strong["epsilon_lb"] == pytest.approx(4.209, abs=1e-3)
    # Identical distributions: true epsilon 0, so a 95% lower bound above 0 may come up at most ~5% of the time
    # (counts here are exactly binomial, the bound's assumption). 40 seeds: Binomial(40, 0.05) exceeds 6 with
    # probability 0.4%.
    null = [split_half_epsilon(rng.normal(size=300), rng.normal(size=300), seed=s)["epsilon_lb"] for s in range(40)]
    assert sum(e > 0 for e in null) <= 6 and max(null) < 0.5


def test_membership_epsilon_lbs_match_the_scalar_bound():
    from mnist_etc.audit.bounds import membership_epsilon_bound, membership_epsilon_lbs

    tp, fp = np.array([0, 1, 17, 40, 40, 25, 3]), np.array([0, 0, 2, 0, 40, 30, 1])
    vector = membership_epsilon_lbs(tp, 40, fp, 40, 0.9, 1e-3)
    assert vector == pytest.approx([membership_epsilon_bound(int(a), 40, int(b), 40, 0.9, 1e-3).epsilon_lb
                                    for a, b in zip(tp, fp)], rel=1e-10)
    assert vector[3] > 2 and vector[0] == 0.0
