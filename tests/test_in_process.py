"""The attack's in-process forward passes: sub-pixel transposed convs and the fused decode + score program."""
import numpy as np
import pytest

from mnist_etc.models import Networks
from mnist_etc.privacy.attacks.in_process import InProcess, fused
from mnist_etc.tf_quiet import tf


@pytest.mark.parametrize("hid_dim", [2, 32])
def test_sub_pixel_decoder_and_fused_program_equal_keras(hid_dim):
    tf.keras.utils.set_random_seed(hid_dim)
    nets = Networks.build(hid_dim)
    # non-zero biases, so that their placement is checked too
    for layer in nets.decoder.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(np.random.default_rng(1).normal(0, 0.1, layer.bias.shape))
    z = np.random.default_rng(0).normal(size=(64, hid_dim)).astype(np.float32)
    ref_images = nets.decoder(z, training=False).numpy()
    decode = InProcess(nets.decoder)
    np.testing.assert_allclose(decode(z), ref_images, atol=1e-5)
    full = nets.full_model()
    images, logits = fused(decode, InProcess(full))(z)
    np.testing.assert_allclose(images, ref_images, atol=1e-5)
    np.testing.assert_allclose(logits, full(ref_images, training=False).numpy(), atol=1e-4)
