import json
import math
import shutil

import numpy as np
import pytest

from mnist_etc.config import DataConfig, TrainConfig
from mnist_etc.errors import UserError
from mnist_etc.model_store import load_model, train_and_save
from mnist_etc.training import train
from tests.conftest import TINY_TRAIN

PLAIN_TINY = TrainConfig(hid_dim=8, ae_epochs=1, clf_epochs=2, batch_size=32)
DP_TINY = TrainConfig(hid_dim=8, ae_epochs=1, clf_epochs=2, batch_size=32, ae_noise_multiplier=1.0,
                      clf_noise_multiplier=1.0, microbatches=8, insecure_seeded_dp=True)


@pytest.fixture(scope="module")
def plain_tiny(tiny_split):
    """One plain training of PLAIN_TINY, shared by the tests that only read it."""
    return train(PLAIN_TINY, tiny_split, progress=False)


@pytest.fixture(scope="module")
def dp_tiny(tiny_split):
    """One insecurely seeded DP training of DP_TINY, shared by the tests that only read it."""
    return train(DP_TINY, tiny_split, progress=False)


def weights_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


def test_training_is_seeded_and_reproducible(plain_tiny, tiny_split):
    a, b = plain_tiny, train(PLAIN_TINY, tiny_split, progress=False)
    assert weights_equal(a.networks.encoder, b.networks.encoder)
    assert weights_equal(a.networks.classifier, b.networks.classifier)
    c = train(TrainConfig(hid_dim=8, ae_epochs=1, clf_epochs=2, batch_size=32, seed=1), tiny_split, progress=False)
    assert not weights_equal(a.networks.encoder, c.networks.encoder)


def test_insecurely_seeded_dp_training_repeats_and_records_epsilon(dp_tiny, tiny_split, tmp_path):
    result, out = train_and_save(DP_TINY, tiny_split, tmp_path / "dp", progress=False)
    again = dp_tiny
    assert weights_equal(result.networks.decoder, again.networks.decoder)  # sampling and noise from `seed`
    record = json.loads((out / "model.json").read_text())
    assert 0 < record["privacy"]["epsilon"] <= record["privacy"]["epsilon_rdp"] < math.inf
    assert record["privacy"]["delta"] == 1e-5 and record["privacy"]["sampling"] == "poisson"
    assert "INSECURE" in record["privacy"]["randomness"] and "NO real guarantee" in record["privacy"]["statement"]
    assert record["privacy"]["ae_effective_noise"] == 0.5  # microbatches of 4: sensitivity 2C
    assert record["config"]["microbatches"] == 8 and record["data"]["n_train"] == tiny_split.n_train
    assert record["data"]["seed"] == 0 and record["config"]["seed"] == 0
    assert len(record["history"]["autoencoder"]) == 1 and len(record["history"]["classifier"]) == 2


def test_dp_randomness_is_secret_by_default(tiny_split):
    cfg = TrainConfig(hid_dim=8, ae_epochs=1, clf_epochs=1, batch_size=32, ae_noise_multiplier=1.0,
                      clf_noise_multiplier=1.0)
    a, b = train(cfg, tiny_split, progress=False), train(cfg, tiny_split, progress=False)
    assert not weights_equal(a.networks.classifier, b.networks.classifier)  # same seed, different noise
    assert a.privacy.randomness == "secret (OS entropy)"


def test_dp_stages_publish_no_training_statistics(dp_tiny, tiny_split):
    result = dp_tiny
    assert "train_accuracy" not in result.metrics and "train_reconstruction_mse" not in result.metrics
    assert {"val_accuracy", "test_accuracy", "val_reconstruction_mse"} <= set(result.metrics)
    for stage in ("autoencoder", "classifier"):
        for row in result.history[stage]:
            assert all(k.startswith("val_") or k == "epoch_seconds" for k in row), row
    half = train(TrainConfig(hid_dim=8, ae_epochs=1, clf_epochs=1, batch_size=32, clf_noise_multiplier=1.0),
                 tiny_split, progress=False)
    assert "train_reconstruction_mse" in half.metrics and "train_accuracy" not in half.metrics


def test_delta_of_one_over_n_or_more_is_refused_before_training(tiny_split):
    with pytest.raises(UserError, match=r"delta must be below 1/n = 0.000667 for 1500 training examples .*got 0.001"):
        train(TrainConfig(delta=1e-3, ae_noise_multiplier=1.0), tiny_split, progress=False)


def test_dp_noise_changes_the_result(plain_tiny, dp_tiny):
    plain, private = plain_tiny, dp_tiny
    assert not weights_equal(plain.networks.encoder, private.networks.encoder)
    assert math.isinf(plain.privacy.epsilon) and math.isfinite(private.privacy.epsilon)


def test_saved_model_round_trips_with_examples(tiny_model_dir, tiny_model, tiny_split):
    for epoch in range(1, TINY_TRAIN.ae_epochs + 1):
        for d in range(10):
            assert (tiny_model_dir / "examples" / f"ae_epoch_{epoch}" / f"orig_{d}.png").is_file()
            assert (tiny_model_dir / "examples" / f"ae_epoch_{epoch}" / f"rec_{d}.png").is_file()
    logits = tiny_model.networks.full_model().predict(tiny_split.x_test, verbose=0)
    acc = float(np.mean(logits.argmax(1) == tiny_split.y_test))
    assert acc == pytest.approx(tiny_model.record["metrics"]["test_accuracy"])
    assert tiny_model.config == TINY_TRAIN and tiny_model.data_config == DataConfig(train_size=1500)


def test_mismatched_or_missing_weights_are_refused(tiny_model_dir, tmp_path):
    wrong = tmp_path / "wrong"
    shutil.copytree(tiny_model_dir, wrong)
    record = json.loads((wrong / "model.json").read_text())
    record["config"]["hid_dim"] = 24
    (wrong / "model.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match="do not fit a encoder with hid_dim 24|do not fit a .* with hid_dim 24"):
        load_model(wrong)
    missing = tmp_path / "missing"
    shutil.copytree(tiny_model_dir, missing)
    (missing / "decoder.weights.h5").unlink()
    with pytest.raises(UserError, match="lacks decoder.weights.h5"):
        load_model(missing)
    with pytest.raises(UserError, match="has no model.json"):
        load_model(tmp_path)


def test_interrupted_training_leaves_no_partial_model(tiny_split, tmp_path):
    def killed(stage, epoch, metrics):
        if stage == "classifier":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_and_save(TrainConfig(hid_dim=8, ae_epochs=1, clf_epochs=2, batch_size=32), tiny_split,
                       tmp_path / "m", progress=False, hook=killed)
    assert list(tmp_path.iterdir()) == []


def test_batch_larger_than_training_set_is_refused(tiny_split):
    with pytest.raises(UserError, match="batch_size must not exceed"):
        train(TrainConfig(batch_size=4096), tiny_split, progress=False)


@pytest.mark.slow
def test_default_settings_beat_85_percent_on_embedded_data():
    from mnist_etc.data import load_split

    result = train(TrainConfig(), load_split(DataConfig()), progress=False)
    assert result.metrics["test_accuracy"] > 0.85, result.metrics


def test_dp_validation_loss_by_direct_calls_equals_keras_predict():
    """The DP stages validate with direct model calls in chunks (not predict(), ~30 ms of set-up per epoch)."""
    import numpy as np

    from mnist_etc.models import Networks
    from mnist_etc.tf_quiet import tf
    from mnist_etc.training import _mean_squared_error

    tf.keras.utils.set_random_seed(3)
    nets = Networks.build(8)
    ae = tf.keras.Sequential([nets.encoder, nets.decoder])
    x = np.random.default_rng(0).random((23, 28, 28, 1), dtype=np.float32)
    expected = float(np.mean((ae.predict(x, verbose=0) - x) ** 2))
    assert abs(_mean_squared_error(ae, x, batch_size=7) - expected) <= 1e-6 * max(1.0, expected)
