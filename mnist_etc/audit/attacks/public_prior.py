"""`public-prior`: an outsider's attack. The attacker fits its own autoencoder on public digits (disjoint
from the target's training data, `mnist_etc.audit.public_data`) and hill-climbs in its own code space,
every candidate scored by the target (in process or through Triton).

Where the search starts matters more than how long it runs. The attacker first has the target score its
public digits once (one query each); each victim's search then starts from the Gaussian of the codes of the
`NEIGHBOURS` public digits whose scores are nearest to the victim's (log-softmax L2), not from the prior
of all public codes. With the embedded digits and a plain model this start alone beats the label-only
baseline, and a short climb adds to it (README, "Privacy findings").
"""
from __future__ import annotations

import dataclasses

import numpy as np

from mnist_etc.audit.attacks.config import AttackConfig
from mnist_etc.audit.attacks.base import Attack, AttackContext
from mnist_etc.audit.attacks.hill_climb import (ClimbResult, Score, compiled, decode_prior_samples, hill_climb,
                                                  log_softmax)
from mnist_etc.audit.public_data import PublicDigits
from mnist_etc.audit.public_models import ATTACKER, PublicAutoencoder, public_autoencoder

NEIGHBOURS = 10


class PublicPriorAttack(Attack):
    name = "public-prior"
    threat_model = ("an outsider who sees only the served model's scores and owns public digits of the same kind, "
                    "never the target's weights or training data")
    needs = "public digits disjoint from training (an autoencoder is fitted on them once and cached)"

    def __init__(self, model: PublicAutoencoder, public: PublicDigits):
        self.model, self.public = model, public
        self._decode = compiled(model.decoder)
        self._public_codes = model.encode(public.x)

    @classmethod
    def prepare(cls, ctx: AttackContext) -> "PublicPriorAttack":
        return cls(public_autoencoder(ctx.public, ATTACKER, ctx.cache_dir), ctx.public)

    def start(self, score: Score, target_logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-victim Gaussian start: codes of the public digits the target scores most like the victim."""
        public_scores = log_softmax(np.asarray(score(self.public.x), np.float64))
        victim_scores = log_softmax(np.asarray(target_logits, np.float64))
        dist = ((victim_scores[:, None, :] - public_scores[None]) ** 2).sum(axis=-1)
        near = np.argsort(dist, axis=1)[:, :NEIGHBOURS]
        codes = self._public_codes[near]                                    # [V, k, h]
        return codes.mean(axis=1), codes.var(axis=1) + 1e-6

    def reconstruct(self, score: Score, target_logits: np.ndarray, cfg: AttackConfig,
                    progress: bool = True) -> ClimbResult:
        mean, var = self.start(score, target_logits)
        climb = hill_climb(self._decode, score, target_logits, mean, var, cfg, progress)
        return dataclasses.replace(climb, queries=climb.queries + len(self.public.y))

    def prior_samples(self, n: int, seed: int) -> np.ndarray:
        return decode_prior_samples(self._decode, self.model.prior_mean, self.model.prior_var, n, seed)
