"""The settings of a reconstruction attack: one home for every default, validated once on construction.

Pydantic only (no TensorFlow): the CLI, the sweep's search space and the audit policy validate an attack's
settings before anything loads. The attack's choices are the registry's names (`mnist_etc.audit.attacks`).
"""
from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from mnist_etc.audit.attacks import DEFAULT_ATTACK, described, names
from mnist_etc.config.settings import Settings
from mnist_etc.config.training import PositiveFloat, Seed

ESTIMATES = ("elite-mean", "best")


class AttackConfig(Settings):
    """A reconstruction attack (Bayesian hill climbing, Galbally et al. 2010) from the target's scores."""

    attack: str = Field(DEFAULT_ATTACK, description=f"attack from the registry: {described()}",
                        json_schema_extra={"enum": list(names())})
    public_data: str = Field("held-out", min_length=1, description=(
        "the attacker's public digits: 'held-out' (validation + half the test split, never trained on) or a path "
        "to an .npz of digits disjoint from training"))
    victims: int = Field(8, ge=1, description=(
        "victims per group: this many held-out non-members and, with members, as many training members"))
    members: bool = Field(True, description=(
        "attack training members too, for the member - non-member gap (an audit figure); false: held-out "
        "non-members only, as a sweep must (its selection may not read statistics of the training split)"))
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
        if value not in names():
            raise ValueError(f"attack must be one of {', '.join(names())}, got {value!r}.")
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
