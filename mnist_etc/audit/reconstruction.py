"""The reconstruction bound of a DP model beside what the served attack reached: the `reconstruction` section of
an audit record (plain numbers; `mnist_etc.audit.gates.reconstruction` judges it).

Reconstruction robustness (Balle, Cherubin, Hayes 2022; Hayes, Mahloujifar, Balle 2023; Kaissis et al. 2023,
`mnist_etc.audit.bounds`, bound 2): if training is f-DP, an attacker who succeeds with probability kappa when
the target is *not* in the training set succeeds with probability at most b(kappa) = 1 - f(kappa) when it is,
f from the model's PLD. Success here is identification: the reconstruction picks its victim out of itself and
50 public digits of its class (`mnist_etc.audit.leakage.identification_ranks`).

Two figures, because the served attacker is not blind:
- `bound_chance` = b(1/51): the most any attacker whose only information about the target is the model can
  reach (a blind guess succeeds 1 time in 51). This is the figure the literature quotes.
- `bound`: the served attacker queries the model *on the target itself* and inverts its scores; that works on
  digits the model never saw (README: "DP-SGD does not stop inversion of the query"), so its success without
  the target in training is not 1/51 but its rate on held-out non-members. Its bound is b(non-members' rate),
  with the non-members' 95% Clopper-Pearson interval carried through b (b is increasing): [bound_low,
  bound_high]. Gating members against b(1/51) would call a correct DP model buggy whenever query inversion
  beats chance, which it does (about 0.18 at epsilon 3.8 against b(1/51) = 0.11).
The gate compares the members' rate (Clopper-Pearson 95% interval) with these: PASS when members_high <=
bound_low, FAIL when members_low > bound_high (each side's error at most 2.5% + 2.5% by the union bound).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mnist_etc.audit.bounds import (clopper_pearson_lower, clopper_pearson_upper, reconstruction_bound_from_events,
                                    trade_off_curve)

CONFIDENCE = 0.95
NO_BOUND = "no bound: epsilon = inf"


def _rate(identified: int, n: int) -> tuple[float, float, float]:
    """Rate and two-sided 95% Clopper-Pearson interval (each side at 97.5%)."""
    side = 1 - (1 - CONFIDENCE) / 2
    return identified / n, clopper_pearson_lower(identified, n, side), clopper_pearson_upper(identified, n, side)


def reconstruction_record(ranks: np.ndarray, member: np.ndarray, events: Sequence[Any] | None,
                          candidates: int) -> dict[str, Any]:
    """The `reconstruction` section: members' and non-members' identification rates (rank 1 among `candidates`
    digits) with their intervals, and the bounds of the model whose training is `events` (None or a
    non-private step: no bound)."""
    ranks, member = np.asarray(ranks), np.asarray(member, bool)
    hit = ranks == 1
    n_m, n_n = int(member.sum()), int((~member).sum())
    if n_m == 0 or n_n == 0:
        raise ValueError(f"the reconstruction bound needs members and non-members among the victims, got {n_m} "
                         f"members and {n_n} non-members.")
    k_m, k_n = int(hit[member].sum()), int(hit[~member].sum())
    m_rate, m_low, m_high = _rate(k_m, n_m)
    n_rate, n_low, n_high = _rate(k_n, n_n)
    kappa = 1.0 / candidates
    rec: dict[str, Any] = {
        "candidates": int(candidates), "kappa_chance": kappa, "confidence": CONFIDENCE, "adjacency": "add_remove",
        "members": n_m, "members_identified": k_m, "members_identification_rate": m_rate,
        "members_identification_low": m_low, "members_identification_high": m_high,
        "non_members": n_n, "non_members_identified": k_n, "non_members_identification_rate": n_rate,
        "non_members_identification_low": n_low, "non_members_identification_high": n_high,
        "bound_chance": None, "bound": None, "bound_low": None, "bound_high": None, "reason": NO_BOUND,
    }
    curve = trade_off_curve(list(events)) if events is not None else None
    if curve is None:
        return rec
    chance = reconstruction_bound_from_events(list(events), kappa)
    rec.update(bound_chance=chance.success_bound, bound=curve.blow_up(n_rate), bound_low=curve.blow_up(n_low),
               bound_high=curve.blow_up(n_high),
               reason=f"b(kappa) = 1 - f(kappa), f the model's add/remove trade-off curve ({chance.reason}); "
                      f"kappa = 1/{candidates} for a blind attacker, the non-members' rate for the served one")
    return rec


def describe_reconstruction(r: dict[str, Any]) -> str:
    """One sentence for the report."""
    measured = (f"members identified {r['members_identification_rate']:.3f} [{r['members_identification_low']:.3f}, "
                f"{r['members_identification_high']:.3f}] ({r['members_identified']} of {r['members']}), "
                f"non-members {r['non_members_identification_rate']:.3f} [{r['non_members_identification_low']:.3f}, "
                f"{r['non_members_identification_high']:.3f}] (chance 1/{r['candidates']})")
    if r.get("bound") is None:
        return f"Reconstruction: {measured}; {r.get('reason', NO_BOUND)}."
    return (f"Reconstruction bound (Hayes et al. 2023, from the model's PLD): **members' identification rate at most "
            f"{r['bound']:.3f}** [{r['bound_low']:.3f}, {r['bound_high']:.3f}] for this attacker (its success without "
            f"the target in training is its non-members' rate; it queries the model on the target), "
            f"{r['bound_chance']:.3f} for an attacker with only the model (baseline 1/{r['candidates']}); measured: "
            f"{measured}.")

