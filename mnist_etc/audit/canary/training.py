"""One training run of a model's own configuration with gradient canaries in its training set.

Each canary is an example given by its gradient (`GradientCanaries`): a spike of norm `C x batch_size` on one
weight of the autoencoder and one weight of the classifier head, with a random sign. Included canaries join
both stages' training sets. Private stages train with the same DP-SGD as `mnist_etc.training` (`DPSGD.from_config`) (Poisson sampling
over real examples and canaries, microbatches, clipping to C, the configured noise); non-private stages with
the same Adam, learning rate, batch size and epochs as Keras `fit` (shuffled full batches of the mean loss),
where nothing bounds an example's gradient. The canary's weight then moves against its sign when it was
trained on; `canary_scores` reads that from the first and last weights (a white-box audit of the released
weights, which is what a DP guarantee covers).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from mnist_etc.config import TrainConfig
from mnist_etc.data import DataSplit
from mnist_etc.models import Networks
from mnist_etc.dp.accounting import steps_per_epoch
from mnist_etc.dp.sgd import DPSGD, GradientCanaries, PerExampleLoss, dp_rng, mse_per_example, \
    split_flat, xent_per_example
from mnist_etc.tf_quiet import tf



@dataclass(frozen=True)
class CanaryDesign:
    """m canaries: which are in the training set, their signs, and the weight each pushes in each stage."""

    included: np.ndarray           # [m] bool, each True with the inclusion probability
    sign: np.ndarray               # [m] +1 / -1
    index: dict[str, np.ndarray]   # stage -> [m] distinct flat weight indices, -1: none (more canaries than weights)
    norm: float                    # each canary's gradient norm before clipping

    @property
    def m(self) -> int:
        return len(self.included)

    def stage_canaries(self, stage: str) -> GradientCanaries:
        inc = self.included & (self.index[stage] >= 0)
        return GradientCanaries(self.index[stage][inc], self.sign[inc], self.norm)


def stage_models(nets: Networks) -> dict[str, tf.keras.Model]:
    autoencoder = tf.keras.Sequential([nets.encoder, nets.decoder])
    autoencoder(np.zeros((1, 28, 28, 1), np.float32))
    return {"autoencoder": autoencoder, "classifier": nets.classifier}


def flat_weights(model: tf.keras.Model) -> np.ndarray:
    return np.concatenate([v.numpy().ravel() for v in model.trainable_variables]).astype(np.float64)


def design_canaries(m: int, inclusion: float, sizes: dict[str, int], norm: float,
                    rng: np.random.Generator) -> CanaryDesign:
    index = {}
    for stage, size in sizes.items():
        # one weight per canary; a stage with fewer weights than canaries gives the rest a zero gradient there
        index[stage] = np.full(m, -1)
        index[stage][:min(m, size)] = rng.choice(size, min(m, size), replace=False)
        index[stage] = rng.permutation(index[stage])
    return CanaryDesign(included=rng.random(m) < inclusion, sign=rng.choice([-1.0, 1.0], m), index=index,
                        norm=norm)


def _plain_epochs(model: tf.keras.Model, loss: PerExampleLoss, x: np.ndarray, y: np.ndarray,
                  canaries: GradientCanaries, cfg: TrainConfig, lr: float, epochs: int, seed: int,
                  bar: tqdm) -> None:
    """What Keras `fit` does (Adam on shuffled full batches of the mean loss), with canaries in the data."""
    optimizer = tf.keras.optimizers.Adam(lr)
    variables = model.trainable_variables
    size = sum(int(np.prod(v.shape)) for v in variables)
    rng = np.random.default_rng(seed)
    n, total, b = len(x), len(x) + len(canaries), cfg.batch_size

    @tf.function(reduce_retracing=True)
    def summed_grads(xb, yb):
        with tf.GradientTape() as tape:
            total_loss = tf.reduce_sum(loss(model, xb, yb))
        return tape.gradient(total_loss, variables)

    for _ in range(epochs):
        perm = rng.permutation(total)
        for start in range(0, total - b + 1, b):
            batch = perm[start:start + b]
            real, chosen = batch[batch < n], batch[batch >= n] - n
            grads = [g.numpy() for g in summed_grads(x[real], y[real])] if len(real) else \
                [np.zeros(v.shape, np.float32) for v in variables]
            if len(chosen):
                grads = [g + c for g, c in zip(grads, split_flat(canaries.flat_sum(chosen, size, None), variables))]
            optimizer.apply_gradients(zip([tf.constant(g / b) for g in grads], variables))
        bar.update(1)


def _dp_epochs(model: tf.keras.Model, loss: PerExampleLoss, x: np.ndarray, y: np.ndarray,
               canaries: GradientCanaries, cfg: TrainConfig, stage: str, epochs: int, noise_scale: float,
               rng: np.random.Generator, bar: tqdm) -> None:
    dp = DPSGD.from_config(model, loss, cfg, stage, rng, canaries=canaries, noise_scale=noise_scale)
    for _ in range(epochs):
        for _ in range(steps_per_epoch(len(x) + len(canaries), cfg.batch_size)):
            dp.step(x, y)
        bar.update(1)


def train_with_canaries(cfg: TrainConfig, split: DataSplit, design: CanaryDesign, progress: bool = True,
                        train_noise_scale: float = 1.0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train `cfg` on the split's training set plus the included canaries; stage -> (first, last) weights.

    `train_noise_scale` multiplies the DP noise actually added and nothing else: a test-only switch that makes
    the training deliberately differ from what the accountant assumes (the audit must catch it)."""
    tf.keras.utils.set_random_seed(cfg.seed)
    rng, _ = dp_rng(cfg.seed if cfg.insecure_seeded_dp else None)
    nets = Networks.build(cfg.hid_dim)
    models = stage_models(nets)
    first = {stage: flat_weights(model) for stage, model in models.items()}
    bar = tqdm(total=cfg.ae_epochs + cfg.clf_epochs, desc="canary run epochs", unit="epoch", disable=not progress)
    ae = models["autoencoder"]
    if cfg.ae_private:
        _dp_epochs(ae, mse_per_example, split.x_train, split.x_train, design.stage_canaries("autoencoder"), cfg,
                   "autoencoder", cfg.ae_epochs, train_noise_scale, rng, bar)
    else:
        _plain_epochs(ae, mse_per_example, split.x_train, split.x_train, design.stage_canaries("autoencoder"), cfg,
                      cfg.ae_learning_rate, cfg.ae_epochs, cfg.seed, bar)
    z = nets.encoder.predict(split.x_train, batch_size=1024, verbose=0)
    clf = models["classifier"]
    if cfg.clf_private:
        _dp_epochs(clf, xent_per_example, z, split.y_train, design.stage_canaries("classifier"), cfg,
                   "classifier", cfg.clf_epochs, train_noise_scale, rng, bar)
    else:
        _plain_epochs(clf, xent_per_example, z, split.y_train, design.stage_canaries("classifier"), cfg,
                      cfg.clf_learning_rate, cfg.clf_epochs, cfg.seed + 1, bar)
    bar.close()
    return {stage: (first[stage], flat_weights(model)) for stage, model in models.items()}


def canary_scores(design: CanaryDesign, weights: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """How far each canary's weights moved against its sign, per stage in units of the stage's median move over
    all canary weights (a function of the released weights only), summed over the stages."""
    total = np.zeros(design.m)
    for stage, (first, last) in weights.items():
        has = design.index[stage] >= 0
        moved = -design.sign[has] * (last - first)[design.index[stage][has]]
        scale = np.median(np.abs(moved))
        total[has] += moved / (scale if scale > 0 else 1.0)
    return total
