"""Leakage scores of a reconstruction against the original image, one value per victim.

- `direct_cosine`: cosine similarity of the pixel vectors (the primary leakage score);
- `perceptual_cosine_1`: cosine of the encoder codes of both images (first order, code space);
- `perceptual_cosine_2`: cosine of the codes after one more decode/encode round trip (second order);
- `ssim`, `psnr` (dB, peak 1.0), `mse`; `class_match`: the classifier gives both the same class.
"""
from __future__ import annotations

import numpy as np

from mnist_etc.models import Networks
from mnist_etc.tf_quiet import tf

LEAKAGE_METRICS = ("direct_cosine", "perceptual_cosine_1", "perceptual_cosine_2", "ssim", "psnr", "mse",
                   "class_match")


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(denom, 1e-12)


def leakage_scores(nets: Networks, originals: np.ndarray, reconstructions: np.ndarray) -> dict[str, np.ndarray]:
    enc = lambda x: nets.encoder(x, training=False).numpy()  # noqa: E731
    dec = lambda z: nets.decoder(z, training=False).numpy()  # noqa: E731
    z_o, z_r = enc(originals), enc(reconstructions)
    full = nets.full_model()
    o = tf.constant(originals, tf.float32)
    r = tf.constant(np.clip(reconstructions, 0, 1), tf.float32)
    return {
        "direct_cosine": cosine_rows(originals, reconstructions),
        "perceptual_cosine_1": cosine_rows(z_o, z_r),
        "perceptual_cosine_2": cosine_rows(enc(dec(z_o)), enc(dec(z_r))),
        "ssim": tf.image.ssim(o, r, max_val=1.0).numpy().astype(np.float64),
        "psnr": tf.image.psnr(o, r, max_val=1.0).numpy().astype(np.float64),
        "mse": np.mean((originals - reconstructions).reshape(len(originals), -1) ** 2, axis=1),
        "class_match": (np.argmax(full(o).numpy(), 1) == np.argmax(full(r).numpy(), 1)).astype(np.float64),
    }


def summarise(scores: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(np.mean(v)) for k, v in scores.items()}
