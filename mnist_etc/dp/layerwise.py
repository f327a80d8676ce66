"""Per-example clipping of a stack of Conv2D / Conv2DTranspose / Dense layers without a backward pass per example.

One forward pass records each weighted layer's input and pre-activation output; one backward pass of the
summed loss gives every example's output gradient at each layer (examples do not interact, so row i of
dL/dz is dL_i/dz_i). A layer's per-example weight gradient is then a small product of its input and its
output gradient:

- Dense:          g_W[i] = x_i^T gz_i (outer product), g_b[i] = gz_i;
- Conv2D:         g_W[i] = sum_p patch_p(x_i) gz_i[p], with the patches of the layer's own kernel, stride and
                  padding (`tf.image.extract_patches`), g_b[i] = sum_p gz_i[p];
- Conv2DTranspose: the transpose of a conv from its output to its input, so the roles swap:
                  g_W[i] = sum_p patch_p(gz_i) x_i[p], patches taken from the output gradient.

These are exactly the per-example gradients of per-example backprop (`sgd.per_example_grads`; tests compare
both to 1e-5), at the cost of one ordinary forward and backward pass plus the products. The per-example weight
gradients of these layers are small (at most hid_dim x 1,568 floats), so they are formed and clipped by
`sgd`; only the backward pass per example is avoided.
"""
from __future__ import annotations

from typing import Callable

from mnist_etc.models import flat_layers
from mnist_etc.tf_quiet import tf

layers = tf.keras.layers
SUPPORTED = (layers.Conv2D, layers.Conv2DTranspose, layers.Dense)
PASSIVE = (layers.Flatten, layers.Reshape, layers.InputLayer)

# (outputs, targets) -> per-example loss [b]
OutputLoss = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def supports(model: tf.keras.Model) -> bool:
    return all(isinstance(l, SUPPORTED + PASSIVE) for l in flat_layers(model)) and \
        all(not isinstance(l, layers.Conv2DTranspose) or l.output_padding is None for l in flat_layers(model))


def pre_activation(layer: tf.keras.layers.Layer, x: tf.Tensor) -> tf.Tensor:
    """A Dense / Conv2D / Conv2DTranspose layer's output before its activation."""
    if isinstance(layer, layers.Dense):
        z = tf.matmul(x, layer.kernel)
    elif isinstance(layer, layers.Conv2DTranspose):
        b, h, w = tf.shape(x)[0], x.shape[1], x.shape[2]
        sh, sw = layer.strides
        out_h, out_w = (h * sh, w * sw) if layer.padding == "same" else \
            ((h - 1) * sh + layer.kernel_size[0], (w - 1) * sw + layer.kernel_size[1])
        z = tf.nn.conv2d_transpose(x, layer.kernel, tf.stack([b, out_h, out_w, layer.filters]), layer.strides,
                                   layer.padding.upper())
    else:
        z = tf.nn.conv2d(x, layer.kernel, layer.strides, layer.padding.upper())
    return z + layer.bias if layer.use_bias else z


def patches(t: tf.Tensor, layer: tf.keras.layers.Layer) -> tf.Tensor:
    """[b, P, kh * kw * channels] patches in the kernel's (kh, kw, channel) order."""
    kh, kw = layer.kernel_size
    p = tf.image.extract_patches(t, [1, kh, kw, 1], [1, *layer.strides, 1], [1, 1, 1, 1], layer.padding.upper())
    return tf.reshape(p, [tf.shape(t)[0], -1, p.shape[-1]])


def per_example_grads(layer: tf.keras.layers.Layer, x: tf.Tensor, gz: tf.Tensor) -> list[tf.Tensor]:
    """[b, *kernel shape] (and [b, *bias shape]) from the layer's input and output gradient."""
    b = tf.shape(x)[0]
    if isinstance(layer, layers.Dense):
        gk = tf.einsum("bi,bo->bio", x, gz)
        gb = gz
    elif isinstance(layer, layers.Conv2DTranspose):
        kh, kw = layer.kernel_size
        pg = patches(gz, layer)                                       # [b, P, kh*kw*filters]
        xi = tf.reshape(x, [b, -1, x.shape[-1]])                       # [b, P, in]
        gk = tf.reshape(tf.einsum("bpk,bpi->bki", pg, xi), [b, kh, kw, layer.filters, x.shape[-1]])
        gb = tf.reduce_sum(gz, axis=[1, 2])
    else:
        kh, kw = layer.kernel_size
        px = patches(x, layer)                                        # [b, P, kh*kw*in]
        go = tf.reshape(gz, [b, -1, gz.shape[-1]])                     # [b, P, out]
        gk = tf.reshape(tf.einsum("bpk,bpo->bko", px, go), [b, kh, kw, x.shape[-1], layer.filters])
        gb = tf.reduce_sum(gz, axis=[1, 2])
    return [gk, gb] if layer.use_bias else [gk]


def _inputs_and_output_grads(model: tf.keras.Model, loss: OutputLoss, x: tf.Tensor, y: tf.Tensor):
    """One forward and one backward pass: (weighted layers, their inputs, per-example output gradients)."""
    inputs, zs = [], []
    with tf.GradientTape() as tape:
        h = x
        for layer in flat_layers(model):
            if isinstance(layer, SUPPORTED):
                inputs.append(h)
                z = pre_activation(layer, h)
                tape.watch(z)
                zs.append(z)
                h = layer.activation(z)
            elif not isinstance(layer, layers.InputLayer):
                h = layer(h)
        total = tf.reduce_sum(loss(h, y))
    return [l for l in flat_layers(model) if isinstance(l, SUPPORTED)], inputs, tape.gradient(total, zs)


def per_example_grads_all(model: tf.keras.Model, loss: OutputLoss, x: tf.Tensor, y: tf.Tensor) -> list[tf.Tensor]:
    """Per-example gradients [b, *shape] of every variable, in `model.trainable_variables` order."""
    return [g for layer, xi, gz in zip(*_inputs_and_output_grads(model, loss, x, y))
            for g in per_example_grads(layer, xi, gz)]


def clipped_sum(model: tf.keras.Model, loss: OutputLoss, x: tf.Tensor, y: tf.Tensor, clip: float) -> list[tf.Tensor]:
    """The sum of per-example gradients clipped to `clip`, in `model.trainable_variables` order.

    Dense layers never form their per-example gradients (the largest here, 1,568 x hid_dim per example): the
    squared norm of an outer product is ||x_i||^2 ||gz_i||^2 (ghost clipping), and the clipped sum is one
    product X^T (c * Gz)."""
    sq, parts = 0.0, []
    for layer, xi, gz in zip(*_inputs_and_output_grads(model, loss, x, y)):
        if isinstance(layer, layers.Dense):
            g2 = tf.reduce_sum(gz * gz, axis=1)
            sq += tf.reduce_sum(xi * xi, axis=1) * g2 + (g2 if layer.use_bias else 0.0)
            parts.append((layer, xi, gz))
        else:
            grads = per_example_grads(layer, xi, gz)
            sq += tf.add_n([tf.reduce_sum(tf.reshape(g * g, [tf.shape(g)[0], -1]), axis=1) for g in grads])
            parts.append((layer, grads, None))
    c = tf.minimum(1.0, clip / tf.sqrt(tf.maximum(sq, 1e-24)))
    out = []
    for layer, a, gz in parts:
        if gz is not None:
            cg = c[:, None] * gz
            out += [tf.matmul(a, cg, transpose_a=True)] + ([tf.reduce_sum(cg, axis=0)] if layer.use_bias else [])
        else:
            out += [tf.tensordot(c, g, axes=1) for g in a]
    return out
