"""The DP-SGD step checked for the properties the accounting assumes (sensitivity, sampling, normalisation)."""
import numpy as np
import pytest

from mnist_etc.config import TrainConfig
from mnist_etc.models import build_classifier_head, build_decoder, build_encoder
from mnist_etc.dp.accounting import privacy_report
from mnist_etc.dp.sgd import DPSGD, clipped_sum_vectorised, dp_rng, mse_per_example, xent_per_example
from mnist_etc.tf_quiet import tf


def _tiny_dp(model, loss, microbatches=None, path="vectorised", clip=1.0, noise=0.0, batch=4, seed=0):
    return DPSGD(model, loss, tf.keras.optimizers.SGD(1.0), clip, noise, batch, microbatches,
                 np.random.default_rng(seed), path=path)


def _flat(grads):
    return np.concatenate([np.ravel(g) for g in grads])


def test_one_example_moves_a_microbatch_of_two_by_up_to_2C_but_per_example_clipping_by_C():
    """The sensitivity itself, measured on the real clipping code with clip C = 1: a linear model whose
    per-example gradient is x (outer) y, so a second example can point against the first."""
    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3, use_bias=False)])
    linear = lambda m, x, y: tf.reduce_sum(m(x) * y, axis=1)  # noqa: E731
    x1, y1 = np.array([[3.0, 0, 0, 0]], np.float32), np.array([[1.0, 0, 0]], np.float32)
    x2, y2 = x1.copy(), -3 * y1      # gradient -3 g1: the microbatch mean flips to -g1
    both_x, both_y = np.concatenate([x1, x2]), np.concatenate([y1, y2])
    mb = _tiny_dp(model, linear, microbatches=1, batch=2)
    one = _flat(mb._sum(x1, y1, np.zeros(1, np.int32)))
    two = _flat(mb._sum(both_x, both_y, np.zeros(2, np.int32)))
    assert np.linalg.norm(one) == pytest.approx(1.0) and np.linalg.norm(two) == pytest.approx(1.0)
    assert np.linalg.norm(two - one) == pytest.approx(2.0)          # 2C: why the accountant halves sigma
    per = _tiny_dp(model, linear, batch=2)
    moved = _flat(per._sum(both_x, both_y, None)) - _flat(per._sum(x1, y1, None))
    assert np.linalg.norm(moved) == pytest.approx(1.0)              # C: the added example's own clipped gradient
    # and never more than C, whatever the added example
    rng = np.random.default_rng(0)
    for _ in range(20):
        x_new, y_new = rng.normal(size=(1, 4)).astype(np.float32) * 5, rng.normal(size=(1, 3)).astype(np.float32)
        d = _flat(per._sum(np.concatenate([x1, x_new]), np.concatenate([y1, y_new]), None)) - one
        assert np.linalg.norm(d) <= 1.0 + 1e-5


def test_as_many_microbatches_as_the_batch_size_still_move_the_sum_by_2C():
    """The adversarial neighbour of M = B: Poisson sampling gives batches of any size and deals examples to
    microbatches at random, so with B = M = 4 two examples land in one microbatch (here microbatch 0, as the
    random assignment does with probability 1/4 for any pair). Removing one moves the clipped sum by 2C,
    so M = B is not per-example clipping and is accounted at sigma / 2."""
    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3, use_bias=False)])
    linear = lambda m, x, y: tf.reduce_sum(m(x) * y, axis=1)  # noqa: E731
    x1, y1 = np.array([[3.0, 0, 0, 0]], np.float32), np.array([[1.0, 0, 0]], np.float32)
    x2, y2 = x1.copy(), -3 * y1
    mb = _tiny_dp(model, linear, microbatches=4, batch=4)
    assert mb.microbatches == mb.batch_size
    without = _flat(mb._sum(x1, y1, np.zeros(1, np.int32)))
    shared = _flat(mb._sum(np.concatenate([x1, x2]), np.concatenate([y1, y2]), np.zeros(2, np.int32)))
    assert np.linalg.norm(shared - without) == pytest.approx(2.0)
    # How often a Poisson batch puts some example beside another in one of M = B microbatches (batch 64, as the
    # defaults): most examples do, so the 2C case is the rule, not a corner.
    rng = np.random.default_rng(0)
    shared_examples = total = 0
    for _ in range(200):
        b = rng.binomial(3500, 64 / 3500)
        slots = np.bincount(rng.integers(0, 64, b), minlength=64)
        shared_examples += int(slots[slots > 1].sum())
        total += b
    assert 0.55 < shared_examples / total < 0.7


def test_ghost_clipping_equals_explicit_per_example_clipping():
    tf.keras.utils.set_random_seed(1)
    head = build_classifier_head(16)
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(37, 16)) * 2).astype(np.float32)
    y = rng.integers(0, 10, 37)
    for clip in (0.1, 1.0, 100.0):
        ghost = _tiny_dp(head, xent_per_example, path="ghost", clip=clip)
        explicit = [t.numpy() for t in clipped_sum_vectorised(head, xent_per_example, tf.constant(x),
                                                              tf.constant(y), clip)]
        np.testing.assert_allclose(_flat(ghost.clipped_sum(x, y)), _flat(explicit), atol=1e-5)


def test_poisson_batches_vary_and_updates_are_normalised_by_the_expected_size():
    head = build_classifier_head(8)
    dp = _tiny_dp(head, xent_per_example, path="ghost", batch=50, seed=3)
    sizes = [len(dp.sample(1000)) for _ in range(400)]
    assert len(set(sizes)) > 10 and np.mean(sizes) == pytest.approx(50, rel=0.05)
    assert np.std(sizes) == pytest.approx(np.sqrt(1000 * 0.05 * 0.95), rel=0.2)
    # noise 0, SGD with learning rate 1: the update is exactly -(sum of clipped gradients) / B.
    rng = np.random.default_rng(4)
    x_all, y_all = rng.normal(size=(1000, 8)).astype(np.float32), rng.integers(0, 10, 1000)
    before = [w.copy() for w in head.get_weights()]
    state = dp.rng.bit_generator.state
    idx = dp.sample(1000)
    expected = [b - g / 50 for b, g in zip(before, dp.clipped_sum(x_all[idx], y_all[idx]))]
    dp.rng.bit_generator.state = state
    dp.step(x_all, y_all)
    assert len(idx) == dp.batch_sizes[-1] != 50
    for got, want in zip(head.get_weights(), expected):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_microbatch_updates_are_normalised_by_the_number_of_microbatches():
    tf.keras.utils.set_random_seed(5)
    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3)])
    dp = _tiny_dp(model, xent_per_example, microbatches=5, batch=20, clip=0.1, seed=5)
    rng = np.random.default_rng(6)
    x_all, y_all = rng.normal(size=(200, 4)).astype(np.float32), rng.integers(0, 3, 200)
    before = [w.copy() for w in model.get_weights()]
    state = dp.rng.bit_generator.state
    idx = dp.sample(200)
    dp.noise()                     # step draws the sample, the noise, then the microbatch assignment
    sums = dp.clipped_sum(x_all[idx], y_all[idx])
    assert np.linalg.norm(_flat(sums)) <= 5 * 0.1 + 1e-6   # at most M clipped microbatch means
    dp.rng.bit_generator.state = state
    dp.step(x_all, y_all)
    for got, b, g in zip(model.get_weights(), before, sums):
        np.testing.assert_allclose(got, b - g / 5, atol=1e-6)
    with pytest.raises(ValueError, match="ghost clipping needs"):
        _tiny_dp(build_classifier_head(4), mse_per_example, path="ghost")


def test_dp_randomness_is_secret_unless_the_insecure_seed_is_asked_for():
    a, how = dp_rng(None)
    b, _ = dp_rng(None)
    assert how == "secret (OS entropy)" and a.random() != b.random()
    c, how_c = dp_rng(7)
    d, _ = dp_rng(7)
    assert "INSECURE" in how_c and c.random() == d.random()
    report = privacy_report(TrainConfig(ae_noise_multiplier=1.0, clf_noise_multiplier=1.0), 3500, how_c)
    assert "NO real guarantee" in report.statement() and "secret source" not in report.statement()
    secret = privacy_report(TrainConfig(ae_noise_multiplier=1.0, clf_noise_multiplier=1.0), 3500, how)
    assert "sampling and noise from a secret source" in secret.statement()


def test_encoder_layers_used_by_dp_training_have_per_example_gradients():
    # The vectorised path must work on every layer shape the autoencoder uses.
    tf.keras.utils.set_random_seed(2)
    ae = tf.keras.Sequential([build_encoder(8), build_decoder(8)])
    x = np.random.default_rng(2).random((5, 28, 28, 1)).astype(np.float32)
    ae(x[:1])
    sums = clipped_sum_vectorised(ae, mse_per_example, tf.constant(x), tf.constant(x), 1.0)
    assert np.linalg.norm(_flat([s.numpy() for s in sums])) <= 5.0 + 1e-4
