"""The one-run canary audit: an empirical lower bound on epsilon, checked against the accounted one.

    >>> rec = run_canary_audit(stored.config, load_split(stored.data_config), CanaryAuditConfig())
    >>> rec["epsilon_lb"], rec["accounted_epsilon"]

m gradient canaries (`training`), each in the training set with probability 1/2, one training run of the model's
own configuration (stages, epochs, batch size, sampling, microbatches, clipping, noise), every canary scored from
the released weights, and the bound of Steinke, Nasr and Jagielski (`bound`). An `epsilon_lb` above the accounted
epsilon of the same run cannot happen if the accounting and the DP-SGD code are right: it is an accounting bug.
The audit run's accounted epsilon is that of its own training set (the real examples plus the included canaries).
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from mnist_etc.config import TrainConfig
from mnist_etc.data import DataSplit
from mnist_etc.models import Networks
from mnist_etc.dp.accounting import privacy_report
from mnist_etc.audit.canary.config import CanaryAuditConfig
from mnist_etc.audit.canary.bound import one_run_bound
from mnist_etc.audit.canary.training import canary_scores, design_canaries, stage_models, train_with_canaries
from mnist_etc.audit.membership import roc_auc

DESIGN = ("gradient canaries: one weight of the autoencoder and one of the classifier head per canary, gradient "
          "norm C x batch size with a random sign, clipped like any example in private stages; scored by how far "
          "those weights moved (white-box, final weights)")


def run_canary_audit(cfg: TrainConfig, split: DataSplit, audit: CanaryAuditConfig, progress: bool = True,
                     train_noise_scale: float = 1.0) -> dict[str, Any]:
    """One training run with canaries; the record of the bound against the run's accounted epsilon.

    `train_noise_scale` != 1 is the test-only deliberate bug of `train_with_canaries` (noise mis-scaled)."""
    t0 = time.perf_counter()
    sizes = {stage: model.count_params() for stage, model in stage_models(Networks.build(cfg.hid_dim)).items()}
    design = design_canaries(audit.canaries, audit.inclusion, sizes, cfg.l2_norm_clip * cfg.batch_size,
                             np.random.default_rng([audit.seed, 0xCA7A]))
    weights = train_with_canaries(cfg, split, design, progress=progress, train_noise_scale=train_noise_scale)
    scores = canary_scores(design, weights)
    bound = one_run_bound(scores, design.included, cfg.delta, audit.confidence)
    n_in = int(design.included.sum())
    accounted = privacy_report(cfg, split.n_train + n_in).epsilon
    consistent = bound.epsilon_lb <= accounted
    record = {
        **bound.as_dict(), "config": audit.as_dict(), "design": DESIGN, "included": n_in,
        "accounted_epsilon": accounted, "accounted_n_train": split.n_train + n_in, "consistent": consistent,
        "canary_auc": roc_auc(scores[design.included], scores[~design.included]) if 0 < n_in < design.m else None,
        "seconds": time.perf_counter() - t0,
        "_scores": scores, "_included": design.included,   # for the plot; not written to JSON
    }
    if train_noise_scale != 1.0:
        record["deliberate_bug"] = f"DP noise actually added x{train_noise_scale:g} (test-only switch)"
    return record


def describe(record: dict[str, Any]) -> str:
    """One sentence: the bound beside the accounted epsilon, and what it means."""
    lb, acc = record["epsilon_lb"], record["accounted_epsilon"]
    text = (f"epsilon_lb {lb:.3f} at {record['confidence']:.0%} confidence from {record['canaries']} canaries "
            f"({record['correct']} of {record['guesses']} guesses right); accounted epsilon of the audit run "
            f"{'inf' if math.isinf(acc) else f'{acc:.3f}'}")
    if not record["consistent"]:
        return text + ": the lower bound exceeds the accounted epsilon, so the accounting or the DP-SGD code is wrong."
    if math.isinf(acc):
        return text + ": not private, as accounted."
    return text + ": consistent (the audit found no more leakage than accounted)."
