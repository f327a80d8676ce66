"""The course project's networks: conv encoder, deconv decoder, linear classifier on the code.

`build_full_model` chains encoder and classifier into image -> logits, with the input named `input`
([N, 28, 28, 1] float32) and the output `logits` ([N, 10]); that is what ONNX export and Triton serve.
"""
from __future__ import annotations

from dataclasses import dataclass

from mnist_etc.tensor_spec import IMAGE_SHAPE, INPUT_NAME, N_CLASSES, OUTPUT_NAME
from mnist_etc.tf_quiet import tf


def build_encoder(hid_dim: int) -> tf.keras.Model:
    layers = tf.keras.layers
    return tf.keras.Sequential([
        layers.Input(IMAGE_SHAPE),
        layers.Conv2D(16, 3, strides=2, padding="same", activation="relu"),   # 14x14x16
        layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),   # 7x7x32
        layers.Flatten(),
        layers.Dense(hid_dim),
    ], name="encoder")


def build_decoder(hid_dim: int) -> tf.keras.Model:
    layers = tf.keras.layers
    return tf.keras.Sequential([
        layers.Input((hid_dim,)),
        layers.Dense(7 * 7 * 32, activation="relu"),
        layers.Reshape((7, 7, 32)),
        layers.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu"),  # 14x14x16
        layers.Conv2DTranspose(1, 3, strides=2, padding="same", activation="sigmoid"),  # 28x28x1
    ], name="decoder")


def build_classifier_head(hid_dim: int) -> tf.keras.Sequential:
    """Linear (Dense-only) classifier on the code: DP-SGD clips it by ghost clipping (mnist_etc.dp.sgd)."""
    return tf.keras.Sequential([tf.keras.layers.Input((hid_dim,)), tf.keras.layers.Dense(N_CLASSES)],
                               name="classifier")


def flat_layers(model: tf.keras.Model) -> list[tf.keras.layers.Layer]:
    """The layers of a (nested) Sequential model in order."""
    out = []
    for layer in model.layers:
        out.extend(flat_layers(layer) if isinstance(layer, tf.keras.Sequential) else [layer])
    return out


@dataclass
class Networks:
    encoder: tf.keras.Model
    decoder: tf.keras.Model
    classifier: tf.keras.Model

    @classmethod
    def build(cls, hid_dim: int) -> "Networks":
        return cls(build_encoder(hid_dim), build_decoder(hid_dim), build_classifier_head(hid_dim))

    def full_model(self) -> tf.keras.Model:
        return build_full_model(self.encoder, self.classifier)


def build_full_model(encoder: tf.keras.Model, classifier: tf.keras.Model) -> tf.keras.Model:
    """image [N,28,28,1] -> logits [N,10], with the tensor names export and serving rely on."""
    image = tf.keras.Input(IMAGE_SHAPE, name=INPUT_NAME, dtype=tf.float32)
    logits = tf.keras.layers.Activation("linear", name=OUTPUT_NAME)(classifier(encoder(image)))
    return tf.keras.Model(image, logits, name="mnist_etc_classifier")
