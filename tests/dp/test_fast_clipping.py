"""tensorflow-privacy's fast gradient clipping with our Conv2D / Conv2DTranspose registry functions: per-example
(and per-microbatch) gradient norms equal the vectorised per-example norms, and tensorflow-privacy's clipped
update equals our reference path's, on every layer shape the autoencoder uses."""
import numpy as np
import pytest
from tensorflow_privacy.privacy.fast_gradient_clipping import clip_grads

from mnist_etc.models import Networks
from mnist_etc.dp.sgd import clip_and_sum, mse_of_outputs, mse_per_example, per_example_grads
from mnist_etc.dp.fast_clipping import layer_registry, outer_sum_squared_norms
from mnist_etc.tf_quiet import tf


def _autoencoder(hid_dim: int) -> tf.keras.Model:
    """The training model of the autoencoder stage: encoder (Conv2D 1->16, 16->32, Dense) and decoder (Dense,
    Conv2DTranspose 32->16, 16->1), with non-zero biases."""
    tf.keras.utils.set_random_seed(hid_dim)
    nets = Networks.build(hid_dim)
    ae = tf.keras.Sequential([tf.keras.Input((28, 28, 1)), nets.encoder, nets.decoder])
    for v in ae.trainable_variables:
        if len(v.shape) == 1:
            v.assign(np.random.default_rng(3).normal(0, 0.1, v.shape))
    return ae


def _per_example_loss(y_true, y_pred, weights=None):
    loss = mse_of_outputs(y_pred, y_true)
    return loss if weights is None else loss * weights


def _reference_norms(ae, x, microbatches=None) -> np.ndarray:
    grads = [g.numpy() for g in per_example_grads(ae, mse_per_example, tf.constant(x), tf.constant(x))]
    if microbatches:   # tensorflow-privacy's microbatches: contiguous, the loss is the microbatch's mean
        grads = [g.reshape(microbatches, -1, *g.shape[1:]).mean(axis=1) for g in grads]
    return np.sqrt(sum((g.reshape(len(g), -1).astype(np.float64) ** 2).sum(axis=1) for g in grads))


@pytest.mark.parametrize("microbatches", [None, 4])
@pytest.mark.parametrize("hid_dim", [2, 32])
def test_norms_equal_the_vectorised_per_example_norms(hid_dim, microbatches):
    ae = _autoencoder(hid_dim)
    x = np.random.default_rng(hid_dim).random((16, 28, 28, 1)).astype(np.float32)
    fast = clip_grads.compute_gradient_norms(ae, layer_registry(), tf.constant(x), tf.constant(x),
                                             per_example_loss_fn=_per_example_loss, num_microbatches=microbatches)
    ref = _reference_norms(ae, x, microbatches)
    assert fast.shape == (microbatches or 16,)
    np.testing.assert_allclose(fast.numpy(), ref, rtol=1e-5)


def test_both_norm_forms_equal_the_explicit_sum_of_outer_products():
    rng = np.random.default_rng(0)
    for positions, da, db in [(4, 64, 48), (196, 9, 16)]:   # Gram ("ghost") form; direct form
        a, b = rng.normal(size=(6, positions, da)), rng.normal(size=(6, positions, db))
        explicit = np.einsum("npa,npb->nab", a, b)
        got = outer_sum_squared_norms(tf.constant(a, tf.float32), tf.constant(b, tf.float32)).numpy()
        np.testing.assert_allclose(got, (explicit ** 2).sum(axis=(1, 2)), rtol=1e-5)
        grouped = explicit.reshape(3, 2, da, db).sum(axis=1)
        got = outer_sum_squared_norms(tf.constant(a, tf.float32), tf.constant(b, tf.float32), 3).numpy()
        np.testing.assert_allclose(got, (grouped ** 2).sum(axis=(1, 2)), rtol=1e-5)


class _ImageMSE(tf.keras.losses.Loss):
    """Mean squared error per image: unreduced, one value per example, as tensorflow-privacy requires."""

    def call(self, y_true, y_pred):
        return mse_of_outputs(y_pred, y_true)


def test_tensorflow_privacy_clipped_update_equals_the_reference_path():
    ae = _autoencoder(32)
    ae.compile(loss=_ImageMSE())
    x = tf.constant(np.random.default_rng(1).random((16, 28, 28, 1)).astype(np.float32))
    norms = _reference_norms(ae, x.numpy())
    clip = float(np.median(norms))   # half the examples are clipped, half are not
    ref = clip_and_sum(per_example_grads(ae, mse_per_example, x, x), clip)

    def weighted_sum(y_true, y_pred, weights):
        return tf.reduce_sum(_per_example_loss(y_true, y_pred, weights))

    fast, _, _ = clip_grads.compute_clipped_gradients_and_outputs(ae, clip, layer_registry(), x, x,
                                                                  clipping_loss=weighted_sum)
    for f, r in zip(fast, ref):
        np.testing.assert_allclose(f.numpy(), r.numpy(), rtol=1e-4, atol=1e-6 * np.abs(r.numpy()).max())
