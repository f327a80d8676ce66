"""Train the autoencoder, then the linear classifier on its frozen code; either stage with DP-SGD.

A private stage (noise multiplier > 0) trains with `mnist_etc.dp.sgd.DPSGD.from_config`: Poisson-sampled batches,
per-example (or per-microbatch) clipping, Gaussian noise from a secret source, normalised by the expected
batch size: the mechanism `mnist_etc.dp.accounting` accounts. The classifier head (one Dense layer)
takes the ghost-clipping path; the conv autoencoder the layerwise path (per-example gradients from each
layer's input and output gradient, `mnist_etc.dp.layerwise`). A private stage
publishes no statistic of the training data: its per-epoch rows hold validation figures only, and
`evaluate` leaves out the training-split figures it touches. Non-private stages use Keras `fit`.

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
from mnist_etc.dp.accounting import PrivacyReport, privacy_report, steps_per_epoch
from mnist_etc.dp.sgd import DPSGD, dp_rng, mse_per_example, xent_per_example
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
    # Non-private stages only (shuffled full batches): private stages sample their own Poisson batches.
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(2)


def _run_dp_epochs(dp: DPSGD, x: np.ndarray, y: np.ndarray, epochs: int, cb: "_EpochCallback",
                   validate: Callable[[], dict[str, float]]) -> None:
    """Epochs of Poisson-sampled DP-SGD steps; each epoch's row holds validation figures only."""
    for epoch in range(epochs):
        cb.on_epoch_begin(epoch)
        for _ in range(steps_per_epoch(len(x), dp.batch_size)):
            dp.step(x, y)
        cb.on_epoch_end(epoch, validate())
    cb.on_train_end()


def _mean_squared_error(model: tf.keras.Model, x: np.ndarray, batch_size: int = 1024) -> float:
    """Reconstruction MSE by direct calls (Keras' predict() costs ~30 ms of set-up per call)."""
    total = 0.0
    for i in range(0, len(x), batch_size):
        chunk = x[i:i + batch_size]
        total += float(tf.reduce_sum(tf.square(model(chunk, training=False) - chunk)))
    return total / x.size


def example_images(split: DataSplit) -> np.ndarray:
    """The first validation image of each digit 0..9 (what the course project saved per epoch)."""
    return np.stack([split.x_val[np.flatnonzero(split.y_val == d)[0]] for d in range(10)])


def train_autoencoder(nets: Networks, split: DataSplit, cfg: TrainConfig, examples_dir: Path | None = None,
                      progress: bool = True, hook: EpochHook | None = None,
                      rng: np.random.Generator | None = None) -> list[dict[str, float]]:
    autoencoder = tf.keras.Sequential([nets.encoder, nets.decoder])
    autoencoder(split.x_val[:1])  # build it: DP-SGD reads its variables before the first step
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
    if cfg.ae_private:
        dp = DPSGD.from_config(autoencoder, mse_per_example, cfg, "autoencoder", rng if rng is not None else dp_rng(None)[0])
        val = lambda: {"val_loss": _mean_squared_error(autoencoder, split.x_val)}  # noqa: E731
        _run_dp_epochs(dp, split.x_train, split.x_train, cfg.ae_epochs, cb, val)
        return cb.rows
    autoencoder.compile(tf.keras.optimizers.Adam(cfg.ae_learning_rate), loss="mse")
    autoencoder.fit(_dataset(split.x_train, split.x_train, cfg.batch_size, cfg.seed), epochs=cfg.ae_epochs,
                    validation_data=(split.x_val, split.x_val), verbose=0, callbacks=[cb])
    return cb.rows


def encode(encoder: tf.keras.Model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    return encoder.predict(x, batch_size=batch_size, verbose=0)


def train_classifier(nets: Networks, split: DataSplit, cfg: TrainConfig, progress: bool = True,
                     hook: EpochHook | None = None, rng: np.random.Generator | None = None) -> list[dict[str, float]]:
    """Linear classifier on the frozen code (codes computed once: the encoder does not change)."""
    z_train, z_val = encode(nets.encoder, split.x_train), encode(nets.encoder, split.x_val)
    model = nets.classifier
    cb = _EpochCallback("classifier", cfg.clf_epochs, progress, hook)
    if cfg.clf_private:
        dp = DPSGD.from_config(model, xent_per_example, cfg, "classifier", rng if rng is not None else dp_rng(None)[0])

        def val() -> dict[str, float]:
            # One direct call: Keras' predict() costs ~30 ms of set-up per call, as much as the epoch's 54 steps.
            logits = model(z_val, training=False).numpy()
            loss = tf.keras.losses.sparse_categorical_crossentropy(split.y_val, logits, from_logits=True)
            return {"val_loss": float(np.mean(loss)),
                    "val_accuracy": float(np.mean(logits.argmax(axis=1) == split.y_val))}

        _run_dp_epochs(dp, z_train, split.y_train, cfg.clf_epochs, cb, val)
        return cb.rows
    model.compile(tf.keras.optimizers.Adam(cfg.clf_learning_rate),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(_dataset(z_train, split.y_train, cfg.batch_size, cfg.seed + 1), epochs=cfg.clf_epochs,
              validation_data=(z_val, split.y_val), verbose=0, callbacks=[cb])
    return cb.rows


def evaluate(nets: Networks, split: DataSplit, cfg: TrainConfig | None = None) -> dict[str, float]:
    """Accuracy and reconstruction error per split. Figures of the training split that a private stage
    shaped are left out: published without noise they would spend privacy the accountant never saw."""
    full = nets.full_model()
    ae_private = cfg is not None and cfg.ae_private
    any_private = cfg is not None and (cfg.ae_private or cfg.clf_private)
    metrics: dict[str, float] = {}
    for name, x, y in (("train", split.x_train, split.y_train), ("val", split.x_val, split.y_val),
                       ("test", split.x_test, split.y_test)):
        if not (name == "train" and any_private):
            logits = full.predict(x, batch_size=1024, verbose=0)
            metrics[f"{name}_accuracy"] = float(np.mean(np.argmax(logits, axis=1) == y))
        if not (name == "train" and ae_private):
            rec = nets.decoder.predict(encode(nets.encoder, x), batch_size=1024, verbose=0)
            metrics[f"{name}_reconstruction_mse"] = float(np.mean((rec - x) ** 2))
    return metrics


def train(cfg: TrainConfig, split: DataSplit, examples_dir: Path | None = None, progress: bool = True,
          hook: EpochHook | None = None) -> TrainResult:
    check_training_inputs(cfg, split.n_train)
    tf.keras.utils.set_random_seed(cfg.seed)   # weights and non-private batches; never the DP randomness
    rng, randomness = dp_rng(cfg.seed if cfg.insecure_seeded_dp else None)
    nets = Networks.build(cfg.hid_dim)
    t0 = time.perf_counter()
    ae_rows = train_autoencoder(nets, split, cfg, examples_dir, progress, hook, rng)
    t1 = time.perf_counter()
    clf_rows = train_classifier(nets, split, cfg, progress, hook, rng)
    t2 = time.perf_counter()
    metrics = evaluate(nets, split, cfg)
    metrics.update(ae_seconds=t1 - t0, clf_seconds=t2 - t1)
    return TrainResult(cfg, nets, privacy_report(cfg, split.n_train, randomness), metrics,
                       {"autoencoder": ae_rows, "classifier": clf_rows})


def check_training_inputs(cfg: TrainConfig, n_train: int) -> None:
    """What can only be refused once the data size is known; called before any training starts."""
    if cfg.batch_size > n_train:
        raise UserError(f"batch_size must not exceed the {n_train} training examples, got {cfg.batch_size}.")
    if cfg.delta >= 1.0 / n_train:
        raise UserError(f"delta must be below 1/n = {1.0 / n_train:.3g} for {n_train} training examples "
                        f"(a larger delta allows releasing an example outright), got {cfg.delta:g}.")
