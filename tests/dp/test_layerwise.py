"""Layerwise per-example gradients (Conv2D, Conv2DTranspose, Dense) against per-example backprop."""
import numpy as np
import pytest

from mnist_etc.models import build_decoder, build_encoder
from mnist_etc.dp import layerwise
from mnist_etc.dp.sgd import DPSGD, clipping_path, mse_of_outputs, mse_per_example, per_example_grads, \
    xent_per_example
from mnist_etc.models import build_classifier_head
from mnist_etc.tf_quiet import tf


def _autoencoder(hid_dim, seed):
    tf.keras.utils.set_random_seed(seed)
    ae = tf.keras.Sequential([build_encoder(hid_dim), build_decoder(hid_dim)])
    ae(np.zeros((1, 28, 28, 1), np.float32))
    return ae


@pytest.mark.parametrize("hid_dim", [2, 16, 32, 64])
def test_layerwise_per_example_gradients_equal_per_example_backprop(hid_dim):
    ae = _autoencoder(hid_dim, hid_dim)
    x = tf.constant(np.random.default_rng(hid_dim).random((6, 28, 28, 1)).astype(np.float32))
    fast = layerwise.per_example_grads_all(ae, mse_of_outputs, x, x)
    ref = per_example_grads(ae, mse_per_example, x, x)
    assert [f.shape for f in fast] == [r.shape for r in ref] == [(6, *v.shape) for v in ae.trainable_variables]
    for f, r in zip(fast, ref):
        scale = float(tf.reduce_max(tf.abs(r))) or 1.0
        np.testing.assert_allclose(f.numpy() / scale, r.numpy() / scale, atol=1e-5)


@pytest.mark.parametrize("path,microbatches", [("layerwise", None), ("layerwise", 4), ("registry", None)])
def test_fast_dp_steps_equal_the_reference_path(path, microbatches):
    """Same seed, same sampling, noise and assignment: the weights after three steps agree (`registry`:
    tensorflow-privacy's fast clipping with our Conv2D / Conv2DTranspose registry functions)."""
    x = np.random.default_rng(0).random((40, 28, 28, 1)).astype(np.float32)
    weights = []
    for path in (path, "vectorised"):
        ae = _autoencoder(8, 0)
        dp = DPSGD(ae, mse_per_example, tf.keras.optimizers.SGD(0.5), 0.01, 0.5, 8, microbatches,
                   np.random.default_rng(1), path=path)
        for _ in range(3):
            dp.step(x, x)
        weights.append(ae.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_the_fastest_applicable_path_is_chosen():
    ae = _autoencoder(8, 0)
    assert clipping_path(ae, mse_per_example, None) == "layerwise"
    assert clipping_path(ae, mse_per_example, 4) == "layerwise"
    assert clipping_path(build_classifier_head(8), xent_per_example, None) == "ghost"
    assert clipping_path(build_classifier_head(8), xent_per_example, 4) == "layerwise"
    odd = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3), tf.keras.layers.Dropout(0.1)])
    assert clipping_path(odd, xent_per_example, None) == "vectorised"
    with pytest.raises(ValueError, match="registry clipping has no microbatches"):
        DPSGD(ae, mse_per_example, tf.keras.optimizers.SGD(1.0), 1.0, 0.0, 4, 4, np.random.default_rng(0),
              path="registry")
    with pytest.raises(ValueError, match="layerwise clipping needs"):
        DPSGD(odd, xent_per_example, tf.keras.optimizers.SGD(1.0), 1.0, 0.0, 4, None, np.random.default_rng(0),
              path="layerwise")
