import json

import numpy as np
import pytest

from mnist_etc.privacy.attacks.hill_climb import attack_model, code_prior, hill_climb, in_process_decoder, in_process_scorer
from mnist_etc.privacy.attack_report import save_attack
from mnist_etc.config import AttackConfig
from mnist_etc.errors import UserError
from mnist_etc.privacy.metrics import cosine_rows, leakage_scores

SMALL = AttackConfig(victims=6, n_iter=120, n_samples=128, n_best=32, lr=0.2)


@pytest.fixture(scope="module")
def small_attack(tiny_model, tiny_split):
    return attack_model(tiny_model.networks, tiny_split, SMALL, progress=False)


def test_attack_reconstructs_clearly_better_than_random_codes(small_attack):
    s, b = small_attack.summary, small_attack.baseline
    assert s["direct_cosine"] > b["direct_cosine"] + 0.1, (s, b)
    assert s["perceptual_cosine_1"] > b["perceptual_cosine_1"] + 0.2, (s, b)
    assert s["ssim"] > b["ssim"] and s["mse"] < b["mse"]
    assert s["class_match"] >= 0.8  # the reconstruction carries the victim's class


def test_attack_is_seeded(small_attack, tiny_model, tiny_split):
    again = attack_model(tiny_model.networks, tiny_split, SMALL, progress=False)
    np.testing.assert_array_equal(again.reconstructions, small_attack.reconstructions)
    np.testing.assert_array_equal(again.victim_indices, small_attack.victim_indices)


def test_one_tensor_program_per_iteration_for_all_victims(tiny_model, tiny_split):
    nets = tiny_model.networks
    score = in_process_scorer(nets)
    batches = []

    def counting_score(images):
        batches.append(len(images))
        return score(images)

    victims = tiny_split.x_test[:5]
    mean, var = code_prior(nets, tiny_split.x_train)
    cfg = AttackConfig(victims=5, n_iter=7, n_samples=64, n_best=8)
    result = hill_climb(in_process_decoder(nets), counting_score, score(victims), mean, var, cfg, progress=False)
    assert batches == [5 * 64] * 7  # every victim's candidates in one call per iteration, never one per victim
    assert result.queries == 5 * 64 * 7 and list(result.iterations) == [7] * 5


def test_stops_when_variance_falls_below_eps_or_scores_are_nan(tiny_model, tiny_split):
    nets = tiny_model.networks
    score = in_process_scorer(nets)
    mean, var = code_prior(nets, tiny_split.x_train)
    victims = tiny_split.x_test[:3]
    big_eps = AttackConfig(victims=3, n_iter=50, n_samples=16, n_best=4, eps=1e6)
    r = hill_climb(in_process_decoder(nets), score, score(victims), mean, var, big_eps, progress=False)
    assert list(r.iterations) == [1, 1, 1]
    nan_score = lambda images: np.full((len(images), 10), np.nan, np.float32)  # noqa: E731
    cfg = AttackConfig(victims=3, n_iter=50, n_samples=16, n_best=4)
    r = hill_climb(in_process_decoder(nets), nan_score, score(victims), mean, var, cfg, progress=False)
    assert list(r.iterations) == [1, 1, 1]


def test_leakage_scores_are_perfect_for_identical_images(tiny_model, tiny_split):
    x = tiny_split.x_test[:4]
    scores = leakage_scores(tiny_model.networks, x, x.copy())
    np.testing.assert_allclose(scores["direct_cosine"], 1.0, atol=1e-6)
    np.testing.assert_allclose(scores["ssim"], 1.0, atol=1e-4)
    np.testing.assert_allclose(scores["mse"], 0.0)
    assert np.all(scores["class_match"] == 1.0)
    assert cosine_rows(np.array([[1.0, 0.0]]), np.array([[0.0, 2.0]]))[0] == 0.0


def test_saved_attack_carries_config_and_scores(small_attack, tmp_path):
    out = save_attack(small_attack, tmp_path / "a", model_path=tmp_path / "model")
    record = json.loads((out / "attack.json").read_text())
    assert record["config"]["n_iter"] == 120 and record["config"]["seed"] == 0
    assert len(record["per_victim"]["direct_cosine"]) == 6
    assert record["summary"]["direct_cosine"] == pytest.approx(small_attack.summary["direct_cosine"])
    assert (out / "grid.png").stat().st_size > 0


def test_too_many_victims_is_refused(tiny_model, tiny_split):
    with pytest.raises(UserError, match="victims must not exceed"):
        attack_model(tiny_model.networks, tiny_split, AttackConfig(victims=5000), progress=False)
