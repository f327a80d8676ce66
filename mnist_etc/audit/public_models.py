"""Autoencoders fitted on public digits only: the attacker's own decoder and prior, and the evaluator.

Two roles, trained the same way with different seeds and code sizes, never on training data:
- `attacker`: the public-prior attack decodes candidates with it and samples codes from its Gaussian prior;
- `evaluator`: a fixed encoder that turns images into codes for the perceptual scores, so that a
  reconstruction is never judged by the target's own encoder (a DP encoder maps everything to one point).

Each is cached on disk per set of public digits (their fingerprint), role and settings, and in memory.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_etc.atomic import staged_dir, write_json_atomic
from mnist_etc.models import build_decoder, build_encoder
from mnist_etc.audit.public_data import PublicDigits
from mnist_etc.tf_quiet import tf

CACHE_DIR = Path(os.environ.get("MNIST_ETC_CACHE", "artifacts/cache")) / "public_models"
FORMAT = 1


@dataclass(frozen=True)
class Role:
    name: str
    hid_dim: int
    epochs: int
    seed: int


ATTACKER = Role("attacker", hid_dim=32, epochs=40, seed=101)
EVALUATOR = Role("evaluator", hid_dim=16, epochs=40, seed=202)


@dataclass
class PublicAutoencoder:
    role: Role
    encoder: tf.keras.Model
    decoder: tf.keras.Model
    prior_mean: np.ndarray        # Gaussian prior of codes: per-dimension mean and variance over public codes
    prior_var: np.ndarray
    val_mse: float                # reconstruction error on the 10% of public digits it did not fit

    def encode(self, x: np.ndarray) -> np.ndarray:
        return self.encoder(tf.constant(x, tf.float32), training=False).numpy()

    def decode(self, z: np.ndarray) -> np.ndarray:
        return self.decoder(tf.constant(z, tf.float32), training=False).numpy()


_memo: dict[str, PublicAutoencoder] = {}
_lock = threading.Lock()


def _key(public: PublicDigits, role: Role) -> str:
    return f"{role.name}-{public.fingerprint()}-h{role.hid_dim}-e{role.epochs}-s{role.seed}-v{FORMAT}"


def _fit(public: PublicDigits, role: Role) -> tuple[tf.keras.Model, tf.keras.Model, float]:
    rng = np.random.default_rng(role.seed)
    order = rng.permutation(len(public.y))
    n_val = max(10, len(order) // 10)
    x_fit, x_val = public.x[order[n_val:]], public.x[order[:n_val]]
    encoder, decoder = build_encoder(role.hid_dim), build_decoder(role.hid_dim)
    # He-normal initial weights from the role's own generator: no global seed is touched (sweep trials
    # train in threads of one process).
    for model in (encoder, decoder):
        model.set_weights([rng.normal(0, np.sqrt(2.0 / max(1, np.prod(w.shape[:-1]))), w.shape).astype(np.float32)
                           if w.ndim > 1 else np.zeros(w.shape, np.float32) for w in model.get_weights()])
    ae = tf.keras.Sequential([encoder, decoder])
    ae.compile(tf.keras.optimizers.Adam(2e-3), loss="mse")
    ds = tf.data.Dataset.from_tensor_slices((x_fit, x_fit)).shuffle(len(x_fit), seed=role.seed).batch(64)
    ae.fit(ds, epochs=role.epochs, verbose=0)
    val_mse = float(np.mean((ae.predict(x_val, verbose=0) - x_val) ** 2))
    return encoder, decoder, val_mse


def public_autoencoder(public: PublicDigits, role: Role = ATTACKER, cache_dir: Path | None = None) -> PublicAutoencoder:
    """The role's autoencoder for these public digits: from memory, from the disk cache, or fitted now."""
    key = _key(public, role)
    with _lock:
        if key in _memo:
            return _memo[key]
        directory = Path(cache_dir or CACHE_DIR) / key
        encoder, decoder = build_encoder(role.hid_dim), build_decoder(role.hid_dim)
        meta_path = directory / "meta.json"
        if meta_path.is_file():
            encoder.load_weights(str(directory / "encoder.weights.h5"))
            decoder.load_weights(str(directory / "decoder.weights.h5"))
            val_mse = float(json.loads(meta_path.read_text())["val_mse"])
        else:
            encoder, decoder, val_mse = _fit(public, role)
            from mnist_etc.model_store import save_weights_file   # here: model_store imports the privacy package

            try:
                with staged_dir(directory, replace=False) as tmp:
                    save_weights_file(encoder, tmp / "encoder.weights.h5")
                    save_weights_file(decoder, tmp / "decoder.weights.h5")
                    write_json_atomic(tmp / "meta.json", {"role": role.__dict__, "public_source": public.source,
                                                          "public_digits": len(public.y), "val_mse": val_mse,
                                                          "fingerprint": public.fingerprint()})
            except FileExistsError:
                pass  # another process cached the same model first: ours is as good, keep using it
        z = encoder.predict(public.x, batch_size=1024, verbose=0)
        model = PublicAutoencoder(role, encoder, decoder, z.mean(axis=0), z.var(axis=0) + 1e-8, val_mse)
        _memo[key] = model
        return model
