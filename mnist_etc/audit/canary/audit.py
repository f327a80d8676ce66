"""The one-run canary audit: an empirical lower bound on epsilon from every step of one training run, held
against the model's accounted guarantee.

    >>> rec = run_canary_audit(stored.config, load_split(stored.data_config), CanaryAuditConfig())
    >>> rec["epsilon_lb"], rec["accounted_epsilon"], rec["rejects_accounted"]

1. Plan, before any canary is looked at (`plan_audit`): simulate the claimed mechanism (`score.simulate`) on
   m canaries (twice), pick, among the numbers of guesses (k "in", and 0 or k "out") whose all-right bound
   exceeds the accounted epsilon by CAP_MARGIN (so that a bug could show), those that give the highest f-DP bound there, then on fresh
   simulations read what a correct implementation reaches with them (`expected_epsilon_lb`, the cap this
   audit can be held to at m canaries) and whether the audit catches noise mis-scaled by 2x (`catches_2x`).
   The simulation is of per-example clipping at the configured noise. With microbatches the accountant claims
   less (noise / 2: two examples may share a microbatch), this implementation does better than that claim, and
   the audit cannot reach it: the plan's figures are then what per-example clipping would show.
2. Run (`training.train_with_canaries`): the model's own configuration trained on its own training split,
   with m gradient canaries on a block of coordinates of their own, each included with probability 1/2,
   scored from every step by the likelihood ratio of the claimed mechanism (`score.LikelihoodRatioScores`).
3. Judge (`bound`): the planned guesses; epsilon_lb (f-DP, (eps, delta) family) and Steinke's beside
   it; and whether the observation rejects the accounted trade-off curve (`rejects_accounted`). Either
   exceeding the accounting cannot happen if the accounting and the DP-SGD code are right: it is a bug.

The canaries are sampled at the real examples' rate over the same steps, so each is one more example whose
guarantee is the model's own: the audit is held to the model's accounted epsilon (training split of n_train).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from mnist_etc.audit.bounds import trade_off_curve
from mnist_etc.audit.canary.bound import epsilon_lower_bound, fdp_epsilon_lower_bound, guesses, rejects_curve
from mnist_etc.audit.canary.config import CanaryAuditConfig
from mnist_etc.audit.canary.score import LikelihoodRatioScores, claimed_stages, simulate
from mnist_etc.audit.canary.training import train_with_canaries
from mnist_etc.audit.membership import roc_auc
from mnist_etc.config import TrainConfig
from mnist_etc.data import DataSplit
from mnist_etc.dp.accounting import privacy_report, training_events

DESIGN = ("white-box gradient canaries on coordinates of their own (never read by the loss), sampled, "
          "clipped and noised with the real examples; scored from every step by the claimed mechanism's "
          "likelihood ratio")
GUESS_FRACTIONS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05)   # k / m tried by the plan
BUG_NOISE_SCALE = 0.5   # the error the audit must be able to catch: noise half of what is accounted
PLANNING_RUNS = 2       # simulations the guess counts are chosen on
CAP_MARGIN = 1.25       # guess counts whose all-right bound is below this x accounted epsilon are not planned


@dataclass(frozen=True)
class AuditPlan:
    k_in: int                           # guesses "in" (highest scores), fixed before the real scores exist
    k_out: int                          # guesses "out" (lowest scores): 0 or k_in
    expected_epsilon_lb: float | None   # a correct implementation's epsilon_lb at this k (fresh simulation)
    catches_2x: bool | None             # a simulated run with noise x0.5 rejects the accounted curve
    bug_epsilon_lb: float | None        # the epsilon_lb of that simulated run
    simulated_grid: dict[str, float]    # "k_in/k_out" -> mean epsilon_lb on the planning simulations


def _judge(scores: np.ndarray, included: np.ndarray, k: tuple[int, int], delta: float, confidence: float, curve):
    r, v = guesses(scores, included, *k)
    m = len(scores)
    return r, v, fdp_epsilon_lower_bound(m, r, v, delta, confidence), rejects_curve(m, r, v, confidence, curve)


def plan_audit(cfg: TrainConfig, n_train: int, audit: CanaryAuditConfig, curve, accounted: float) -> AuditPlan:
    """Choose k on a simulation of the claimed mechanism; measure the plan on two fresh ones (module doc)."""
    claims = claimed_stages(cfg, n_train)
    m = audit.canaries
    sizes = sorted({max(1, min(m // 2, int(round(f * m)))) for f in GUESS_FRACTIONS})
    ks = [(k, out) for k in sizes for out in (0, k)]
    if curve is None:   # not private: nothing to reject, and an included canary is seen exactly
        return AuditPlan(sizes[-1], sizes[-1], None, None, None, {})
    # Only guess counts whose all-right bound clears the accounted epsilon with room: with fewer guesses not even
    # a training with far less noise than accounted could show more than the accounting (nothing to catch).
    reach = {k: fdp_epsilon_lower_bound(m, sum(k), sum(k), cfg.delta, audit.confidence) for k in ks}
    ks = [k for k in ks if reach[k] >= CAP_MARGIN * accounted] or [max(ks, key=sum)]
    rng = np.random.default_rng([audit.seed, 0x9A1])
    included = rng.random(m) < 0.5
    # the mean over PLANNING_RUNS simulations: one alone favours few guesses that happened to be right
    grid = {k: 0.0 for k in ks}
    for _ in range(PLANNING_RUNS):
        planning = simulate(claims, included, rng)
        for k in ks:
            grid[k] += _judge(planning, included, k, cfg.delta, audit.confidence, None)[2] / PLANNING_RUNS
    k = max(grid, key=lambda key: (grid[key], -sum(key)))   # ties: fewer guesses
    _, _, expected, _ = _judge(simulate(claims, included, rng), included, k, cfg.delta, audit.confidence, None)
    _, _, bug_lb, caught = _judge(simulate(claims, included, rng, noise_scale=BUG_NOISE_SCALE), included, k,
                                  cfg.delta, audit.confidence, curve)
    return AuditPlan(k[0], k[1], expected, caught, bug_lb, {f"{a}/{b}": e for (a, b), e in grid.items()})


def run_canary_audit(cfg: TrainConfig, split: DataSplit, audit: CanaryAuditConfig, progress: bool = True,
                     train_noise_scale: float = 1.0) -> dict[str, Any]:
    """Plan, one training run with canaries, and the record of the bounds against the model's accounting.

    `train_noise_scale` != 1 is the test-only deliberate bug of `train_with_canaries` (noise mis-scaled)."""
    t0 = time.perf_counter()
    n = split.n_train
    accounted = privacy_report(cfg, n).epsilon
    curve = trade_off_curve(training_events(cfg, n))
    plan = plan_audit(cfg, n, audit, curve, accounted)
    included = np.random.default_rng([audit.seed, 0xCA7A]).random(audit.canaries) < audit.inclusion
    scorer = LikelihoodRatioScores(audit.canaries, claimed_stages(cfg, n))
    train_with_canaries(cfg, split, included, scorer.observe, progress=progress, train_noise_scale=train_noise_scale)
    scores = scorer.scores
    r, v, eps_lb, rejects = _judge(scores, included, (plan.k_in, plan.k_out), cfg.delta, audit.confidence, curve)
    steinke = epsilon_lower_bound(audit.canaries, r, v, cfg.delta, audit.confidence)
    n_in = int(included.sum())
    record = {
        "epsilon_lb": eps_lb, "epsilon_lb_steinke": steinke, "confidence": audit.confidence, "delta": cfg.delta,
        "canaries": audit.canaries, "guesses": r, "correct": v, "k_in": plan.k_in, "k_out": plan.k_out,
        "included": n_in,
        "accounted_epsilon": accounted, "accounted_n_train": n, "rejects_accounted": rejects,
        "consistent": not rejects and eps_lb <= accounted and steinke <= accounted,
        "expected_epsilon_lb": plan.expected_epsilon_lb, "catches_2x": plan.catches_2x,
        "bug_epsilon_lb": plan.bug_epsilon_lb, "planning_grid": plan.simulated_grid,
        "fraction_of_accounted": eps_lb / accounted if math.isfinite(accounted) and accounted > 0 else None,
        "fraction_of_expected": (eps_lb / plan.expected_epsilon_lb if plan.expected_epsilon_lb else None),
        "steps_observed": dict(scorer.steps), "config": audit.as_dict(), "design": DESIGN,
        "scores_depend_on_training_data": cfg.microbatches is not None,
        "canary_auc": roc_auc(scores[included], scores[~included]) if 0 < n_in < audit.canaries else None,
        "seconds": time.perf_counter() - t0,
        "_scores": scores, "_included": included,   # for the plot; not written to JSON
    }
    if train_noise_scale != 1.0:
        record["deliberate_bug"] = f"DP noise actually added x{train_noise_scale:g} (test-only switch)"
    return record


def _num(x: float | None) -> str:
    return "-" if x is None else "inf" if math.isinf(x) else f"{x:.3f}"


def describe(record: dict[str, Any]) -> str:
    """One sentence: the bound beside the accounted epsilon, and what it means."""
    lb, acc = record["epsilon_lb"], record["accounted_epsilon"]
    text = (f"epsilon_lb {lb:.3f} (f-DP; Steinke {record['epsilon_lb_steinke']:.3f}) at "
            f"{record['confidence']:.0%} confidence from {record['canaries']} canaries ({record['correct']} of "
            f"{record['guesses']} guesses right) against accounted epsilon {_num(acc)}")
    if record.get("expected_epsilon_lb") is not None:
        text += f" (a correct implementation reaches {record['expected_epsilon_lb']:.3f} here)"
    if not record["consistent"]:
        return text + ": the observation contradicts the accounting, so the accounting or the DP-SGD code is wrong."
    if math.isinf(acc):
        return text + ": not private, as accounted."
    if record.get("catches_2x") is False:
        return text + ": consistent, but this audit is too weak to have caught noise mis-scaled by 2x."
    return text + ": consistent, and noise mis-scaled by 2x would have been caught."
