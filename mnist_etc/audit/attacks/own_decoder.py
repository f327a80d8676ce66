"""`own-decoder`: the course project's threat model. The attacker holds the target's own decoder and the
Gaussian prior of the target's training codes, and searches that code space."""
from __future__ import annotations

import numpy as np

from mnist_etc.audit.attacks.config import AttackConfig
from mnist_etc.errors import UserError
from mnist_etc.audit.attacks.base import Attack, AttackContext
from mnist_etc.audit.attacks.hill_climb import ClimbResult, Score, compiled, decode_prior_samples, hill_climb


class OwnDecoderAttack(Attack):
    name = "own-decoder"
    threat_model = ("an insider who holds the target's own decoder and the mean and variance of its training "
                    "codes, and queries the classifier's scores")
    needs = "the target's decoder and encoder (white box), the training digits' code statistics"

    def __init__(self, decoder, prior_mean: np.ndarray, prior_var: np.ndarray):
        self.decoder, self.prior_mean, self.prior_var = decoder, prior_mean, prior_var
        self._decode = compiled(decoder)

    @classmethod
    def prepare(cls, ctx: AttackContext) -> "OwnDecoderAttack":
        if ctx.target is None:
            raise UserError("attack 'own-decoder' needs the target's own networks (a model directory); use "
                            "'public-prior' against a model known only by its scores.")
        z = ctx.target.encoder.predict(ctx.split.x_train, batch_size=1024, verbose=0)
        return cls(ctx.target.decoder, z.mean(axis=0), z.var(axis=0) + 1e-8)

    def reconstruct(self, score: Score, target_logits: np.ndarray, cfg: AttackConfig,
                    progress: bool = True) -> ClimbResult:
        return hill_climb(self._decode, score, target_logits, self.prior_mean, self.prior_var, cfg, progress)

    def prior_samples(self, n: int, seed: int) -> np.ndarray:
        return decode_prior_samples(self._decode, self.prior_mean, self.prior_var, n, seed)
