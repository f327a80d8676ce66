import math

import dp_accounting
import pytest
from dp_accounting import pld

from mnist_etc.config import TrainConfig
from mnist_etc.privacy.accounting import privacy_report, steps_per_epoch


def test_non_private_stages_give_infinite_epsilon():
    assert math.isinf(privacy_report(TrainConfig(), 3500).epsilon)
    # One private stage is not enough: the other saw the data without noise.
    half = privacy_report(TrainConfig(clf_noise_multiplier=1.0), 3500)
    assert math.isinf(half.epsilon) and math.isfinite(half.clf_epsilon)
    assert "autoencoder" in half.statement()


def test_epsilon_falls_as_noise_rises():
    eps = [privacy_report(TrainConfig(ae_noise_multiplier=s, clf_noise_multiplier=s), 3500).epsilon
           for s in (0.6, 0.8, 1.1, 2.0, 4.0)]
    assert all(a > b for a, b in zip(eps, eps[1:])), eps


def test_delta_defaults_to_one_over_n_train():
    report = privacy_report(TrainConfig(ae_noise_multiplier=1.0, clf_noise_multiplier=1.0), 3500)
    assert report.delta == pytest.approx(1 / 3500)


def test_matches_an_independent_pld_computation():
    """Our RDP figure against dp_accounting's PLD accountant, built here from first principles.

    RDP is an upper bound; PLD is tight. They must agree within the known RDP slack (PLD <= RDP and
    RDP not more than ~35% above at these settings), and both must react to noise in the same way."""
    n, batch, epochs = 3500, 64, 10
    cfg = TrainConfig(ae_epochs=epochs, clf_epochs=epochs, batch_size=batch,
                      ae_noise_multiplier=1.1, clf_noise_multiplier=1.1)
    ours = privacy_report(cfg, n)
    steps = 2 * epochs * (n // batch)
    accountant = pld.PLDAccountant(value_discretization_interval=1e-4)
    accountant.compose(dp_accounting.PoissonSampledDpEvent(batch / n, dp_accounting.GaussianDpEvent(1.1)), steps)
    independent = accountant.get_epsilon(1 / n)
    assert independent <= ours.epsilon <= 1.35 * independent, (independent, ours.epsilon)


def test_reference_point_of_the_tensorflow_privacy_tutorial():
    # 60k MNIST, batch 256, sigma 1.1, 60 epochs, delta 1e-5: the tutorials report epsilon about 3
    # (2.6 with add/remove adjacency, which is what we account).
    cfg = TrainConfig(ae_epochs=60, clf_epochs=60, batch_size=256, ae_noise_multiplier=1.1,
                      clf_noise_multiplier=1.1, delta=1e-5)
    assert privacy_report(cfg, 60000).ae_epsilon == pytest.approx(2.6, abs=0.1)
    assert steps_per_epoch(60000, 256) == 234
