"""The one-run canary audit (Steinke, Nasr and Jagielski 2023): an empirical lower bound on epsilon.

- `bound`: the paper's bound from the number of correct in/out guesses;
- `training`: one training run of a model's configuration with gradient canaries in its training set;
- `audit`: the audit's configuration, the run, and its record (`run_canary_audit`).
"""
from mnist_etc.privacy.audit_policy import CanaryAuditConfig
from mnist_etc.privacy.canary.audit import describe, run_canary_audit

__all__ = ["CanaryAuditConfig", "describe", "run_canary_audit"]
