"""The attack's in-process forward passes: the ONNX Runtime program (phase convolutions, folded layouts and
Dense layers) and the TensorFlow program (sub-pixel transposed convs) both equal Keras' own layers."""
import os
import signal

import numpy as np
import pytest

from mnist_etc.models import Networks
from mnist_etc import keras_onnx as onnx_program
from mnist_etc.audit.attacks.in_process import InProcess, fused
from mnist_etc.keras_onnx import OnnxProgram, Unsupported, to_onnx
from mnist_etc.tf_quiet import tf

layers = tf.keras.layers


def _nets(hid_dim: int) -> Networks:
    tf.keras.utils.set_random_seed(hid_dim)
    nets = Networks.build(hid_dim)
    # non-zero biases, so that their placement is checked too
    for model in (nets.encoder, nets.decoder, nets.classifier):
        for layer in model.layers:
            if getattr(layer, "bias", None) is not None:
                layer.bias.assign(np.random.default_rng(1).normal(0, 0.1, layer.bias.shape))
    return nets


@pytest.mark.parametrize("backend", ["auto", "tensorflow"])
@pytest.mark.parametrize("hid_dim", [2, 32])
def test_decoder_target_and_fused_program_equal_keras(hid_dim, backend):
    nets = _nets(hid_dim)
    z = np.random.default_rng(0).normal(size=(300, hid_dim)).astype(np.float32)  # more than one chunk, ragged
    ref_images = nets.decoder(z, training=False).numpy()
    full = nets.full_model()
    ref_logits = full(ref_images, training=False).numpy()
    decode, score = InProcess(nets.decoder, backend=backend), InProcess(full, backend=backend)
    assert decode.backend == score.backend == ("onnxruntime" if backend == "auto" else "tensorflow")
    np.testing.assert_allclose(decode(z), ref_images, atol=1e-5)
    np.testing.assert_allclose(score(ref_images), ref_logits, atol=1e-4)
    np.testing.assert_allclose(fused(decode, score)(z), ref_logits, atol=1e-4)
    if backend == "auto":
        assert isinstance(fused(decode, score), OnnxProgram)


def test_the_onnx_graph_has_no_transposed_convolution_and_folds_the_code_layer_into_the_head():
    import onnx
    nets = _nets(32)
    graph, out_shape = to_onnx([nets.decoder, nets.full_model()])
    ops = [n.op_type for n in onnx.load_from_string(graph).graph.node]
    assert out_shape == (10,)
    # first decoder layer: 4 phase convolutions; second: one convolution on the phases; one interleave at the end
    assert "ConvTranspose" not in ops and ops.count("DepthToSpace") == 1 and ops.count("Conv") == 4 + 1 + 2
    assert ops.count("Gemm") == 2   # decoder Dense, and encoder Dense x classifier as one
    assert "Transpose" not in ops   # codes in, logits out: channels-first throughout


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("kernel,stride", [(3, 2), (4, 2), (2, 2), (5, 3), (3, 1)])
def test_other_convolution_shapes_convert_exactly(kernel, stride, padding):
    """Transposed and forward convolutions of other kernels, strides and paddings, with a phase-held map feeding
    a second transposed convolution and then a Flatten -> Dense."""
    tf.keras.utils.set_random_seed(kernel * 10 + stride)
    model = tf.keras.Sequential([
        layers.Input((5,)), layers.Dense(4 * 4 * 8, activation="tanh"), layers.Reshape((4, 4, 8)),
        layers.Conv2DTranspose(16, kernel, strides=stride, padding=padding, activation="relu"),
        layers.Conv2DTranspose(3, kernel, strides=stride, padding=padding),
        layers.Activation("sigmoid"),
        layers.Conv2D(4, kernel, strides=stride, padding=padding, activation="relu"),
        layers.Flatten(), layers.Dense(6),
    ])
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(np.random.default_rng(2).normal(0, 0.1, layer.bias.shape))
    x = np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32)
    np.testing.assert_allclose(OnnxProgram([model], chunk=16)(x), model(x).numpy(), atol=1e-4, rtol=1e-4)


def test_an_unsupported_layer_falls_back_to_tensorflow():
    model = tf.keras.Sequential([layers.Input((28, 28, 1)), layers.Conv2D(4, 3), layers.BatchNormalization(),
                                 layers.Flatten(), layers.Dense(10)])
    with pytest.raises(Unsupported, match="BatchNormalization"):
        to_onnx([model])
    run = InProcess(model)
    assert run.backend == "tensorflow"
    x = np.random.default_rng(0).random((3, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(run(x), model(x, training=False).numpy(), atol=1e-5)


def test_a_forked_child_gets_its_own_thread_pool(tmp_path):
    """A process forked after the pool started (a Prefect or Triton worker) must not wait on the parent's threads."""
    nets = _nets(32)
    program = OnnxProgram([nets.decoder], chunk=16)
    z = np.random.default_rng(0).normal(size=(64, 32)).astype(np.float32)
    expected = program(z)
    assert onnx_program._POOL is not None
    pid = os.fork()
    if pid == 0:   # the child: run the program across the pool, report through the exit status
        signal.alarm(60)   # a hang ends the child with SIGALRM, which fails the test
        try:
            os._exit(0 if np.allclose(program(z), expected) else 3)
        except BaseException:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_layers_without_bias_and_a_linear_dense_chain_convert():
    tf.keras.utils.set_random_seed(5)
    model = tf.keras.Sequential([
        layers.Input((4,)), layers.Dense(3 * 3 * 16, use_bias=False), layers.Reshape((3, 3, 16)),
        layers.Conv2DTranspose(8, 3, strides=2, padding="same", use_bias=False, activation="relu"),
        layers.Conv2D(4, 3, padding="same", use_bias=False), layers.Flatten(),
        layers.Dense(7), layers.Dense(5, use_bias=False), layers.Dense(3, activation="tanh"),
    ])
    x = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    program = OnnxProgram([model], chunk=8)
    np.testing.assert_allclose(program(x), model(x).numpy(), atol=1e-5)
    import onnx
    ops = [n.op_type for n in onnx.load_from_string(to_onnx([model])[0]).graph.node]
    assert ops.count("Gemm") == 2   # the first Dense, then the three linear-into-tanh Dense layers as one
