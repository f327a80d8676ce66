"""One training run of a model's own configuration with the audit's gradient canaries, observed at every step.

The canaries (`mnist_etc.dp.sgd.CanaryBlock`) live on m coordinates of their own, appended to the parameters
and never read by the loss, so each canary is an example that only its own coordinate sees. Private stages
train the real model with the same DP-SGD as `mnist_etc.training` (`DPSGD.from_config`: Poisson sampling,
microbatches, clipping to C, the configured noise), and the included canaries are sampled, clipped and noised
with the real examples; every step's noisy clipped sum on the block goes to the scorer (white-box: the auditor
sees every iterate, the setting in which one-run auditing is tight, Steinke et al. 2023). A non-private stage
bounds nothing: an included canary's unclipped gradient is seen once per epoch without noise, exactly, and the
real model of that stage is not trained (nothing about the canaries would depend on it).

With per-example clipping (microbatches unset) what the scorer sees depends on the canaries and fresh
randomness only, never on a real example: publishing it costs the training data nothing. With microbatches a
canary is clipped together with the real examples of its microbatch, so the scores are outputs of this DP run.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from mnist_etc.config import TrainConfig
from mnist_etc.data import DataSplit
from mnist_etc.dp.accounting import steps_per_epoch
from mnist_etc.dp.sgd import DPSGD, CanaryBlock, dp_rng, mse_per_example, xent_per_example
from mnist_etc.models import Networks
from mnist_etc.tf_quiet import tf

Observer = Callable[[str, np.ndarray], None]   # (stage, the block's noisy clipped sum / C of one step)


def train_with_canaries(cfg: TrainConfig, split: DataSplit, included: np.ndarray, observe: Observer,
                        progress: bool = True, train_noise_scale: float = 1.0) -> None:
    """Train `cfg` on the split with the canaries `included` in its training set; `observe(stage, values)` is
    called with every step's block (and, for a non-private stage, once per epoch with the exact gradients).

    `train_noise_scale` multiplies the DP noise actually added and nothing else: a test-only switch that makes
    the training deliberately differ from what the accountant assumes (the audit must catch it)."""
    tf.keras.utils.set_random_seed(cfg.seed)
    rng, _ = dp_rng(cfg.seed if cfg.insecure_seeded_dp else None)
    norm = cfg.l2_norm_clip * cfg.batch_size   # far above C: clipping binds, as for a worst-case example
    nets = Networks.build(cfg.hid_dim)
    bar = tqdm(total=cfg.ae_epochs + cfg.clf_epochs, desc="canary run epochs", unit="epoch", disable=not progress)
    autoencoder = tf.keras.Sequential([nets.encoder, nets.decoder])
    autoencoder(np.zeros((1, 28, 28, 1), np.float32))
    stages = (("autoencoder", autoencoder, mse_per_example, cfg.ae_epochs, cfg.ae_private),
              ("classifier", nets.classifier, xent_per_example, cfg.clf_epochs, cfg.clf_private))
    for stage, model, loss, epochs, private in stages:
        x = split.x_train if stage == "autoencoder" else nets.encoder.predict(split.x_train, batch_size=1024,
                                                                              verbose=0)
        y = split.x_train if stage == "autoencoder" else split.y_train
        if not private:
            for _ in range(epochs):
                observe(stage, included * (norm / cfg.l2_norm_clip))
                bar.update(1)
            continue
        block = CanaryBlock(included, norm, lambda values, stage=stage: observe(stage, values))
        dp = DPSGD.from_config(model, loss, cfg, stage, rng, canaries=block, noise_scale=train_noise_scale)
        for _ in range(epochs):
            for _ in range(steps_per_epoch(len(x), cfg.batch_size)):
                dp.step(x, y)
            bar.update(1)
    bar.close()
