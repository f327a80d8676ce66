"""The interface every reconstruction attack implements, and what it is given.

An attack is a class with a `name`, its `threat_model` in one sentence and what it `needs`; `prepare`
builds it from an `AttackContext` (whatever the attacker is allowed to hold), and `reconstruct` searches
for images whose scores under the target match the victims' scores, querying only `score`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from mnist_etc.audit.attacks.config import AttackConfig
from mnist_etc.data import DataSplit
from mnist_etc.models import Networks
from mnist_etc.audit.attacks.hill_climb import ClimbResult, Score
from mnist_etc.audit.public_data import PublicDigits


@dataclass
class AttackContext:
    split: DataSplit                 # the target's data split (the attack reads only what its threat model allows)
    public: PublicDigits             # digits disjoint from training: the attacker's public knowledge
    target: Networks | None          # the target's own networks, for white-box threat models
    cache_dir: Path | None = None    # where models fitted on public digits are cached


class Attack(ABC):
    name: ClassVar[str]
    threat_model: ClassVar[str]
    needs: ClassVar[str]

    @classmethod
    @abstractmethod
    def prepare(cls, ctx: AttackContext) -> "Attack":
        """Build the attacker from what it may know."""

    @abstractmethod
    def reconstruct(self, score: Score, target_logits: np.ndarray, cfg: AttackConfig,
                    progress: bool = True) -> ClimbResult:
        """Reconstructions of the victims whose scores are `target_logits`, querying only `score`."""

    @abstractmethod
    def prior_samples(self, n: int, seed: int) -> np.ndarray:
        """Images decoded from `n` random codes of the attacker's prior: what it draws knowing nothing."""
