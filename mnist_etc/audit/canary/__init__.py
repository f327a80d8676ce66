"""The one-run canary audit (Steinke, Nasr and Jagielski 2023): an empirical lower bound on epsilon.

- `config`: its settings (`CanaryAuditConfig`, pydantic only);
- `bound`: the paper's bound from the number of correct in/out guesses;
- `training`: one training run of a model's configuration with gradient canaries in its training set;
- `audit`: the run and its record (`run_canary_audit`, `describe`);
- `report`: the record on disk.
Names are imported on first use, so reading the settings costs no TensorFlow import.
"""
from mnist_etc.lazy_exports import lazy_exports

_HOMES = {"CanaryAuditConfig": "config", "describe": "audit", "run_canary_audit": "audit"}

__all__ = sorted(_HOMES)

__getattr__ = lazy_exports(__name__, _HOMES)
