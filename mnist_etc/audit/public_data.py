"""What the attacker may know: public digits disjoint from the target's training data, and the victims.

The split (`mnist_etc.data`) holds train / validation / test. The target trains on `train` only, so every
other digit is public in the privacy sense. Victims must not be public too (an attacker whose prior was
fitted on the victim would look stronger on non-members than it is), so the held-out digits are divided:

- non-member victims: the first half of the (already shuffled, stratified) test split;
- public digits ("held-out"): the validation split plus the second half of the test split.

With `--data mnist` that is the part of MNIST the target did not train on. A file of public digits of
your own (`public_data: PATH.npz`, Keras mnist.npz layout or arrays `x`, `y`) is checked against the
training digits: a public set that shares any image with training is refused.
"""
from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_etc.data import DataSplit, validate_digits
from mnist_etc.errors import UserError

HELD_OUT = "held-out"


@dataclass(frozen=True)
class PublicDigits:
    x: np.ndarray          # [N, 28, 28, 1] float32 in [0, 1]
    y: np.ndarray          # [N] int64
    source: str            # "held-out" or the file's path

    def fingerprint(self) -> str:
        """Identifies the digits themselves: the cache key of everything fitted on them."""
        h = hashlib.sha256(np.round(self.x * 255).astype(np.uint8).tobytes())
        h.update(self.y.astype(np.int64).tobytes())
        return h.hexdigest()[:16]

    def class_means(self) -> np.ndarray:
        """[10, 28, 28, 1]: the mean public digit of each class (what the label alone gives away)."""
        return np.stack([self.x[self.y == c].mean(axis=0) for c in range(10)]).astype(np.float32)


def nonmember_pool(split: DataSplit) -> np.ndarray:
    """Indices into the test split from which non-member victims are drawn."""
    return np.arange(len(split.y_test) // 2)


def _row_digests(x: np.ndarray) -> list[bytes]:
    """One digest per image of its 8-bit pixels (what 'the same digit' means here)."""
    flat = np.round(x.reshape(len(x), -1) * 255).astype(np.uint8)
    return [hashlib.blake2b(row.tobytes(), digest_size=12).digest() for row in flat]


def overlap_count(public_x: np.ndarray, train_x: np.ndarray) -> int:
    """How many public digits are pixel-for-pixel training digits."""
    train = set(_row_digests(train_x))
    return sum(d in train for d in _row_digests(public_x))


def _load_file(path: str) -> tuple[np.ndarray, np.ndarray]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"public_data {path!r} is neither {HELD_OUT!r} nor an existing .npz file of digits.")
    try:
        with np.load(p, allow_pickle=False) as f:
            if {"x", "y"} <= set(f.files):
                x, y = f["x"], f["y"]
            elif {"x_train", "y_train", "x_test", "y_test"} <= set(f.files):
                x, y = np.concatenate([f["x_train"], f["x_test"]]), np.concatenate([f["y_train"], f["y_test"]])
            else:
                raise UserError(f"public_data {path!r} holds {', '.join(sorted(f.files))}; it needs arrays x and y "
                                f"(or the Keras mnist.npz layout).")
    except UserError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"public_data {path!r} is not a readable .npz archive ({exc}).") from None
    return validate_digits(x, y, f"public_data {path!r}")


def public_digits(split: DataSplit, source: str = HELD_OUT) -> PublicDigits:
    """The attacker's public digits; refused with one sentence if they overlap the training digits."""
    if source == HELD_OUT:
        rest = np.arange(len(split.y_test) // 2, len(split.y_test))
        x = np.concatenate([split.x_val, split.x_test[rest]])
        y = np.concatenate([split.y_val, split.y_test[rest]])
    else:
        x, y = _load_file(source)
    missing = sorted(set(range(10)) - set(np.unique(y).tolist()))
    if missing:
        raise UserError(f"public_data {source!r} lacks digits of class {', '.join(map(str, missing))}; the "
                        f"label-only baseline needs every class.")
    shared = overlap_count(x, split.x_train)
    if shared:
        raise UserError(f"public_data {source!r} overlaps the target's training data ({shared} of its {len(y)} "
                        f"digits are training digits); public digits must be disjoint from training.")
    return PublicDigits(x.astype(np.float32), y.astype(np.int64), source)
