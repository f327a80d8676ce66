"""In-process forward passes for the attack's inner loop, at the speed of the hardware.

`InProcess(model)` is a Keras model usable as a `Decode` or a `Score` (numpy in, numpy out), and
`fused(decoder, target)` decodes and scores in one program (hill climbing uses it when both are in process).
Both run as an ONNX Runtime program (`mnist_etc.keras_onnx.OnnxProgram`) when the networks convert, which ours do;
otherwise, or with `backend="tensorflow"`, as a compiled TensorFlow program, which two things make faster
than Keras' own layers:

- a stride-2, 3x3, 'same' Conv2DTranspose (the decoder's upsampling) runs as its sub-pixel equivalent: one
  ordinary 2x2 convolution producing the four output phases as channels, then `depth_to_space`. It is the same
  linear map (y[2i + a, 2j + b] gathers the kernel taps of phase (a, b)), exact to float rounding, and oneDNN
  runs a forward convolution much faster than the input-gradient kernel TensorFlow uses for a transposed one;
- decoding and scoring are one compiled program, so images never leave TensorFlow between the two.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from mnist_etc.keras_onnx import OnnxProgram, Unsupported
from mnist_etc.models import flat_layers
from mnist_etc.tf_quiet import tf

layers = tf.keras.layers

# phase -> (tap for input offset -1, tap for input offset 0) of a 3-tap, stride-2, 'same' transposed conv:
# y[2i] = x[i] K[0] + x[i - 1] K[2], y[2i + 1] = x[i] K[1]
_TAPS = {0: (2, 0), 1: (None, 1)}


def _subpixel_ok(layer: tf.keras.layers.Layer) -> bool:
    return (isinstance(layer, layers.Conv2DTranspose) and tuple(layer.kernel_size) == (3, 3)
            and tuple(layer.strides) == (2, 2) and layer.padding == "same" and layer.output_padding is None
            and tuple(layer.dilation_rate) == (1, 1))


def subpixel_kernel(kernel: tf.Tensor) -> tf.Tensor:
    """A transposed conv's kernel [3, 3, out, in] -> the 2x2 conv kernel [2, 2, in, 4 * out] of its phases."""
    out_ch, in_ch = kernel.shape[2], kernel.shape[3]
    zero = tf.zeros([in_ch, out_ch], kernel.dtype)
    rows = []
    for sy in (0, 1):
        cols = []
        for sx in (0, 1):
            phases = []
            for a in (0, 1):
                for b in (0, 1):
                    ky, kx = _TAPS[a][sy], _TAPS[b][sx]
                    phases.append(zero if ky is None or kx is None else tf.transpose(kernel[ky, kx]))
            cols.append(tf.stack(phases, axis=1))                    # [in, 4, out], phase-major (a, b)
        rows.append(tf.stack(cols))
    return tf.reshape(tf.stack(rows), [2, 2, in_ch, 4 * out_ch])


def _subpixel(layer: tf.keras.layers.Layer, x: tf.Tensor) -> tf.Tensor:
    y = tf.nn.conv2d(tf.pad(x, [[0, 0], [1, 0], [1, 0], [0, 0]]), subpixel_kernel(layer.kernel), 1, "VALID")
    y = tf.nn.depth_to_space(y, 2)
    return layer.activation(y + layer.bias if layer.use_bias else y)


def forward(model: tf.keras.Model, x: tf.Tensor, subpixel: bool = True) -> tf.Tensor:
    """The model's output, transposed convs as sub-pixel convs where they qualify (else the model itself)."""
    layers_ = flat_layers(model) if isinstance(model, tf.keras.Sequential) else []
    if not subpixel or not any(_subpixel_ok(l) for l in layers_):
        return model(x, training=False)
    for layer in layers_:
        if isinstance(layer, layers.InputLayer):
            continue
        x = _subpixel(layer, x) if _subpixel_ok(layer) else layer(x, training=False)
    return x


BACKENDS = ("auto", "tensorflow")


def _program(models: list[tf.keras.Model], backend: str) -> OnnxProgram | None:
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "tensorflow":
        return None
    try:
        return OnnxProgram(models)
    except Unsupported:
        return None


class InProcess:
    """A Keras model for numpy batches: `InProcess(decoder)(codes) -> images`. `backend="auto"` runs it with
    ONNX Runtime when it converts (`self.backend` says which ran), `"tensorflow"` always with TensorFlow. Build
    it after training: the ONNX Runtime program keeps the weights the model had then."""

    def __init__(self, model: tf.keras.Model, subpixel: bool = True, backend: str = "auto"):
        self.model, self.subpixel = model, subpixel   # subpixel=False: Keras' own layers (the reference)
        self._program = _program([model], backend)
        self.backend = "onnxruntime" if self._program is not None else "tensorflow"
        self._run = tf.function(lambda x: forward(model, x, subpixel), reduce_retracing=True)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self._program is not None:
            return self._program(x)
        return self._run(tf.constant(x, tf.float32)).numpy()


def fused(decode: InProcess, score: InProcess) -> Callable[[np.ndarray], np.ndarray]:
    """codes -> logits in one program: ONNX Runtime when both sides run there, else one TensorFlow program."""
    if decode.backend == score.backend == "onnxruntime":
        program = _program([decode.model, score.model], "auto")
        if program is not None:
            return program
    run = tf.function(lambda z: forward(score.model, forward(decode.model, z, decode.subpixel), score.subpixel),
                      reduce_retracing=True)
    return lambda codes: run(tf.constant(codes, tf.float32)).numpy()
