"""Conv2D and Conv2DTranspose for tensorflow-privacy's fast gradient clipping registry.

tensorflow-privacy 0.9.0's registry (`fast_gradient_clipping.layer_registry`) ships Dense, Embedding,
LayerNormalization, MultiHeadAttention and EinsumDense. `layer_registry()` adds the two convolutions of our
autoencoder, in the registry's own format: a function of (layer, args, kwargs, tape, num_microbatches) that
runs the layer, hands the tape its pre-activation output Z, and returns a function from dL/dZ (the summed
loss's gradient, one backward pass for the whole batch) to each example's squared gradient norm.

A convolution is a Dense applied at every position p: example i's kernel gradient is
sum_p a_i[p] (x) b_i[p], with a the layer's input patches and b its output gradients (Conv2D), or, for the
transposed convolution (the transpose of a convolution from its output to its input), the output gradient's
patches against the input (`layerwise` derives both). Its squared norm is computed in whichever of two forms
costs fewer multiply-adds for the layer's shape, without forming the gradient of every example and layer
at once:

- Gram ("ghost") form: <A A^T, B B^T> over positions, P^2 (da + db) per example; tensorflow-privacy's
  einsum helper always takes this one, which for a 3x3 convolution of one channel on 14 x 14 positions
  costs 30x the direct form;
- direct form: the [da, db] sum of outer products of one example, then its squared entries, P da db.

The bias gradient is sum_p b_i[p]. With microbatches (tensorflow-privacy's convention: contiguous, equal
microbatches whose loss is the mean), the sums run over the microbatch's examples too.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from mnist_etc.dp import layerwise
from mnist_etc.tf_quiet import tf


def _group(t: tf.Tensor, num_microbatches) -> tf.Tensor:
    """[b, P, d] -> [m, (b / m) P, d]: one row block per microbatch (unchanged without microbatches)."""
    if num_microbatches is None:
        return t
    return tf.reshape(t, [num_microbatches, -1, t.shape[-1]])


def outer_sum_squared_norms(a: tf.Tensor, b: tf.Tensor, num_microbatches=None) -> tf.Tensor:
    """||sum_p a[i, p] (x) b[i, p]||^2 per example i (or microbatch), for a [n, P, da] and b [n, P, db]."""
    a, b = _group(a, num_microbatches), _group(b, num_microbatches)
    positions, da, db = a.shape[1], a.shape[2], b.shape[2]
    if positions is not None and positions * (da + db) < da * db:
        return tf.reduce_sum(tf.matmul(a, a, transpose_b=True) * tf.matmul(b, b, transpose_b=True), axis=[1, 2])
    return tf.reduce_sum(tf.square(tf.matmul(a, b, transpose_a=True)), axis=[1, 2])


def _bias_squared_norms(b: tf.Tensor, num_microbatches=None) -> tf.Tensor:
    s = tf.reduce_sum(_group(tf.reshape(b, [tf.shape(b)[0], -1, b.shape[-1]]), num_microbatches), axis=1)
    return tf.reduce_sum(tf.square(s), axis=1)


def _pre_activation(layer, input_args: Sequence[Any], input_kwargs: Mapping[str, Any], tape: tf.GradientTape):
    """The registry's first two outputs: the pre-activation output Z (watched by the tape) and the layer's output."""
    if input_kwargs or len(input_args) != 1:
        raise ValueError(f"layer {layer.name!r}: one positional input and no keyword arguments expected")
    z = layerwise.pre_activation(layer, input_args[0])
    tape.watch(z)
    return z, layer.activation(z)


def conv2d_layer_computation(layer: tf.keras.layers.Conv2D, input_args: Sequence[Any],
                             input_kwargs: Mapping[str, Any], tape: tf.GradientTape, num_microbatches=None):
    """Registry function for `tf.keras.layers.Conv2D` (channels-last, undilated, ungrouped)."""
    if layer.data_format != "channels_last" or tuple(layer.dilation_rate) != (1, 1) or layer.groups != 1:
        raise NotImplementedError(f"layer {layer.name!r}: only channels-last, undilated, ungrouped Conv2D")
    x = input_args[0]
    z, outputs = _pre_activation(layer, input_args, input_kwargs, tape)

    def sqr_norm_fn(dz: tf.Tensor) -> tf.Tensor:
        g = tf.reshape(dz, [tf.shape(dz)[0], -1, dz.shape[-1]])
        sq = outer_sum_squared_norms(layerwise.patches(x, layer), g, num_microbatches)
        return sq + _bias_squared_norms(g, num_microbatches) if layer.use_bias else sq

    return z, outputs, sqr_norm_fn


def conv2d_transpose_layer_computation(layer: tf.keras.layers.Conv2DTranspose, input_args: Sequence[Any],
                                       input_kwargs: Mapping[str, Any], tape: tf.GradientTape,
                                       num_microbatches=None):
    """Registry function for `tf.keras.layers.Conv2DTranspose` (channels-last, undilated, no output padding)."""
    if layer.data_format != "channels_last" or tuple(layer.dilation_rate) != (1, 1) or \
            layer.output_padding is not None:
        raise NotImplementedError(f"layer {layer.name!r}: only channels-last, undilated Conv2DTranspose "
                                  "without output padding")
    x = input_args[0]
    z, outputs = _pre_activation(layer, input_args, input_kwargs, tape)

    def sqr_norm_fn(dz: tf.Tensor) -> tf.Tensor:
        a = tf.reshape(x, [tf.shape(x)[0], -1, x.shape[-1]])           # input positions
        sq = outer_sum_squared_norms(layerwise.patches(dz, layer), a, num_microbatches)
        return sq + _bias_squared_norms(dz, num_microbatches) if layer.use_bias else sq

    return z, outputs, sqr_norm_fn


def layer_registry():
    """tensorflow-privacy's default registry plus Conv2D and Conv2DTranspose."""
    from tensorflow_privacy.privacy.fast_gradient_clipping import layer_registry as lr
    registry = lr.make_default_layer_registry()
    registry.insert(tf.keras.layers.Conv2D, conv2d_layer_computation)
    registry.insert(tf.keras.layers.Conv2DTranspose, conv2d_transpose_layer_computation)
    return registry
