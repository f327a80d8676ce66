"""The settings of the one-run canary audit (pydantic only: validated before anything trains)."""
from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from mnist_etc.config import Settings


class CanaryAuditConfig(Settings):
    """How the one-run canary audit is run."""

    canaries: int = Field(100_000, ge=2, le=10_000_000, description=(
        "canaries m of the one-run audit (each costs one coordinate of its own, not an example)"))
    inclusion: float = Field(0.5, gt=0, lt=1, description=(
        "probability that each canary is in the training set; must be 0.5, the probability the bound is "
        "proved for"))
    confidence: float = Field(0.95, gt=0, lt=1, description="confidence of the epsilon lower bound")
    seed: int = Field(0, ge=0, description="which canaries are in, and the planning simulations")

    @model_validator(mode="after")
    def _inclusion_is_one_half(self) -> "CanaryAuditConfig":
        if self.inclusion != 0.5:
            raise ValueError(f"inclusion must be 0.5: the one-run bound (Steinke et al. 2023, Theorem 3) is "
                             f"proved for canaries included with probability 1/2, got {self.inclusion!r}.")
        return self

    def as_dict(self) -> dict[str, Any]:
        return self.to_dict()
