"""Train the autoencoder, then the linear classifier on its frozen code; either stage with DP-SGD.

DP-SGD comes from tensorflow-privacy's `make_dp_model_class`: per-example (or per-microbatch) gradients
are clipped to `l2_norm_clip` and Gaussian noise of std `l2_norm_clip * noise_multiplier` is added. The
Dense-only classifier uses the fast gradient-clipping path (layer registry); the convolutional
autoencoder uses the vectorised per-example path (about 3x a plain epoch here, against 12x for
`DPKerasAdamOptimizer` with microbatches).

    >>> result = train(TrainConfig(), load_split(DataConfig()))
    >>> result.metrics["test_accuracy"], result.privacy.epsilon
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm.auto import tqdm

from mnist_etc.config import TrainConfig
from mnist_etc.data import DataSplit
from mnist_etc.errors import UserError
from mnist_etc.images import save_digit
from mnist_etc.models import Networks
from mnist_etc.privacy.accounting import PrivacyReport, privacy_report
from mnist_etc.tf_quiet import tf

# Called after every epoch with (stage, epoch index from 0, metrics): the sweep logs these to MLflow.
EpochHook = Callable[[str, int, dict[str, float]], None]


@dataclass
class TrainResult:
    config: TrainConfig
    networks: Networks
    privacy: PrivacyReport
    metrics: dict[str, float]
    history: dict[str, list[dict[str, float]]] = field(default_factory=dict)


class _EpochCallback(tf.keras.callbacks.Callback):
    """A tqdm bar over epochs, epoch timing and the per-epoch hook."""

    def __init__(self, stage: str, epochs: int, progress: bool, hook: EpochHook | None,
                 after_epoch: Callable[[int], None] | None = None):
        super().__init__()
        self.stage, self.hook, self.after_epoch = stage, hook, after_epoch
        self.bar = tqdm(total=epochs, desc=f"{stage} epochs", unit="epoch", disable=not progress, leave=True)
        self.rows: list[dict[str, float]] = []

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        row = {k: float(v) for k, v in (logs or {}).items()}
        row["epoch_seconds"] = time.perf_counter() - self._t0
        self.rows.append(row)
        if self.after_epoch:
            self.after_epoch(epoch)
        if self.hook:
            self.hook(self.stage, epoch, row)
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k != "epoch_seconds"})
        self.bar.update(1)

    def on_train_end(self, logs: Any = None) -> None:
        self.bar.close()


def _dataset(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> tf.data.Dataset:
    # Full batches only: DP microbatching needs them, and the accounting counts n // batch steps per epoch.
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(2)


def _wrap(model: tf.keras.Model, noise: float, cfg: TrainConfig, fast_clipping: bool) -> tf.keras.Model:
    """Sequential(model), private (DP-SGD) when noise > 0."""
    if noise <= 0:
        return tf.keras.Sequential([model])
    from tensorflow_privacy.privacy.fast_gradient_clipping import layer_registry
    from tensorflow_privacy.privacy.keras_models.dp_keras_model import make_dp_model_class

    dp_sequential = make_dp_model_class(tf.keras.Sequential)
    registry = layer_registry.make_default_layer_registry() if fast_clipping else None
    return dp_sequential(l2_norm_clip=cfg.l2_norm_clip, noise_multiplier=noise,
                         num_microbatches=cfg.microbatches, use_xla=False, layer_registry=registry,
                         layers=[model] if not fast_clipping else model.layers)


def example_images(split: DataSplit) -> np.ndarray:
    """The first validation image of each digit 0..9 (what the course project saved per epoch)."""
    return np.stack([split.x_val[np.flatnonzero(split.y_val == d)[0]] for d in range(10)])


def train_autoencoder(nets: Networks, split: DataSplit, cfg: TrainConfig, examples_dir: Path | None = None,
                      progress: bool = True, hook: EpochHook | None = None) -> list[dict[str, float]]:
    autoencoder = tf.keras.Sequential([nets.encoder, nets.decoder])
    model = _wrap(autoencoder, cfg.ae_noise_multiplier, cfg, fast_clipping=False)
    model.compile(tf.keras.optimizers.Adam(cfg.ae_learning_rate), loss="mse")
    samples = example_images(split)

    def save_examples(epoch: int) -> None:
        if examples_dir is None:
            return
        out = examples_dir / f"ae_epoch_{epoch + 1}"
        out.mkdir(parents=True, exist_ok=True)
        rec = autoencoder.predict(samples, verbose=0)
        for d in range(10):
            save_digit(samples[d], out / f"orig_{d}.png")
            save_digit(rec[d], out / f"rec_{d}.png")

    cb = _EpochCallback("autoencoder", cfg.ae_epochs, progress, hook, save_examples)
    model.fit(_dataset(split.x_train, split.x_train, cfg.batch_size, cfg.seed), epochs=cfg.ae_epochs,
              validation_data=(split.x_val, split.x_val), verbose=0, callbacks=[cb])
    return cb.rows


def encode(encoder: tf.keras.Model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    return encoder.predict(x, batch_size=batch_size, verbose=0)


def train_classifier(nets: Networks, split: DataSplit, cfg: TrainConfig, progress: bool = True,
                     hook: EpochHook | None = None) -> list[dict[str, float]]:
    """Linear classifier on the frozen code (codes computed once: the encoder does not change)."""
    z_train, z_val = encode(nets.encoder, split.x_train), encode(nets.encoder, split.x_val)
    model = _wrap(nets.classifier, cfg.clf_noise_multiplier, cfg, fast_clipping=True)
    model.compile(tf.keras.optimizers.Adam(cfg.clf_learning_rate),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    cb = _EpochCallback("classifier", cfg.clf_epochs, progress, hook)
    model.fit(_dataset(z_train, split.y_train, cfg.batch_size, cfg.seed + 1), epochs=cfg.clf_epochs,
              validation_data=(z_val, split.y_val), verbose=0, callbacks=[cb])
    if cfg.clf_private:
        # The DP wrapper built its own Dense layer objects from the head's: copy the weights back.
        nets.classifier.set_weights(model.get_weights())
    return cb.rows


def evaluate(nets: Networks, split: DataSplit) -> dict[str, float]:
    full = nets.full_model()
    metrics: dict[str, float] = {}
    for name, x, y in (("train", split.x_train, split.y_train), ("val", split.x_val, split.y_val),
                       ("test", split.x_test, split.y_test)):
        logits = full.predict(x, batch_size=1024, verbose=0)
        metrics[f"{name}_accuracy"] = float(np.mean(np.argmax(logits, axis=1) == y))
        rec = nets.decoder.predict(encode(nets.encoder, x), batch_size=1024, verbose=0)
        metrics[f"{name}_reconstruction_mse"] = float(np.mean((rec - x) ** 2))
    return metrics


def train(cfg: TrainConfig, split: DataSplit, examples_dir: Path | None = None, progress: bool = True,
          hook: EpochHook | None = None) -> TrainResult:
    if cfg.batch_size > split.n_train:
        raise UserError(f"batch_size must not exceed the {split.n_train} training examples, got {cfg.batch_size}.")
    tf.keras.utils.set_random_seed(cfg.seed)
    nets = Networks.build(cfg.hid_dim)
    t0 = time.perf_counter()
    ae_rows = train_autoencoder(nets, split, cfg, examples_dir, progress, hook)
    t1 = time.perf_counter()
    clf_rows = train_classifier(nets, split, cfg, progress, hook)
    t2 = time.perf_counter()
    metrics = evaluate(nets, split)
    metrics.update(ae_seconds=t1 - t0, clf_seconds=t2 - t1)
    return TrainResult(cfg, nets, privacy_report(cfg, split.n_train), metrics,
                       {"autoencoder": ae_rows, "classifier": clf_rows})
