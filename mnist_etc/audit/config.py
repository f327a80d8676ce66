"""The audit policy: what the privacy audit runs and where its gates stand, one home for every default.

    >>> AuditConfig(leakage_bound=0.8, canary={"canaries": 200})

Only pydantic here (no TensorFlow, no numpy), so the command line and Prefect validate a policy in well under
a second, before any server starts. `mnist_etc.audit.run` measures, `mnist_etc.audit.gates` judges
against it, `mnist_etc.audit.canary` runs its canary part (whose settings live there).
"""
from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, model_validator

from mnist_etc.audit.attacks.config import AttackConfig
from mnist_etc.audit.canary.config import CanaryAuditConfig
from mnist_etc.config import Settings

MIN_VICTIMS = 50   # per group: below this the excess interval is too wide to gate on
# Per group: the demo's excess interval had half-width ~0.016 at 50 + 50 victims; it shrinks as 1 / sqrt(n), so
# 130 + 130 bring it to ~0.010, fine enough for a verdict on the 0.05 bound when the estimate is 0.01 or more away.
DEFAULT_VICTIMS = 130
SERVED_ATTACK = "public-prior"
# The membership AUC bound's reason: the largest AUC a pure epsilon-DP mechanism allows is e^eps / (1 + e^eps)
# (mnist_etc.audit.bounds.pure_dp_max_auc); 0.6 is that of eps = log(1.5) = 0.405.
MEMBERSHIP_AUC_BOUND = 0.6


def _served_attack_defaults() -> AttackConfig:
    return AttackConfig(attack=SERVED_ATTACK, victims=DEFAULT_VICTIMS, n_iter=8, n_samples=128, n_best=32)


class AuditConfig(Settings):
    """The audit policy: one home for its defaults (the flows, the CLI and the pipeline take this model)."""

    attack: AttackConfig = Field(default_factory=_served_attack_defaults, description=(
        f"the served attack: {SERVED_ATTACK!r} on at least {MIN_VICTIMS} members and as many non-members "
        f"({DEFAULT_VICTIMS} by default: a leakage interval about 0.01 wide each side)"))
    max_epsilon: float = Field(10.0, ge=0, description="fail above this epsilon (PLD, whole model)")
    allow_non_private: bool = Field(False, description="epsilon = inf passes the epsilon test only when this is true")
    leakage_bound: float = Field(0.05, ge=-1, le=2, description=(
        "PASS when the excess cosine's 95% interval lies wholly at or below this, FAIL when wholly above"))
    membership_auc_bound: float = Field(MEMBERSHIP_AUC_BOUND, ge=0.5, le=1, description=(
        "PASS when the membership AUC's 95% interval lies wholly at or below this, FAIL when wholly above; "
        "0.6 is the most a pure epsilon-DP model allows at epsilon 0.405 (max AUC = e^eps / (1 + e^eps)): a "
        "membership signal beyond what a strongly private model could show, whatever its accounted epsilon"))
    growth_margin: float = Field(0.05, ge=0, le=2, description=(
        "PASS when the 95% interval of the excess cosine's change since the last audit of the same model lies "
        "wholly at or below this, FAIL when wholly above"))
    inconclusive: Literal["pass", "fail"] = Field("fail", description=(
        "whether an INCONCLUSIVE audit (no gate FAIL, but some not shown safe) counts as passed"))
    membership_samples: int = Field(500, ge=10, description="members and as many non-members of the membership test")
    compare_in_process: bool = Field(True, description="run the in-process and own-decoder attacks for the record")
    canary_audit: bool | None = Field(None, description=(
        "the one-run canary audit (one more training run): null = when the model is DP"))
    canary: CanaryAuditConfig = Field(default_factory=CanaryAuditConfig, description="the canary audit's settings")

    @model_validator(mode="after")
    def _served_attack_gates(self) -> "AuditConfig":
        if self.attack.attack != SERVED_ATTACK:
            # The leakage gate and its growth test are defined on the outsider's attack through the endpoint.
            raise ValueError(f"the audit's served attack must be {SERVED_ATTACK!r} (the outsider who sees only the "
                             f"scores; the own-decoder attack runs beside it for the record), got "
                             f"{self.attack.attack!r}.")
        if self.attack.victims < MIN_VICTIMS:
            raise ValueError(f"victims must be at least {MIN_VICTIMS} per group for the audit to gate on the "
                             f"leakage interval, got {self.attack.victims}.")
        return self

    def wants_canary_audit(self, epsilon: float) -> bool:
        return self.canary_audit if self.canary_audit is not None else math.isfinite(epsilon)

    def as_dict(self) -> dict[str, Any]:
        return self.to_dict()
