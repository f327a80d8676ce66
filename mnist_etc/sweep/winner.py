"""The winner policy of a sweep (see `WinnerPolicy`) and the Pareto front, over completed trials."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mnist_etc.sweep.space import WinnerPolicy


@dataclass(frozen=True)
class Candidate:
    """What the policy needs of a completed trial."""

    number: int
    accuracy: float
    leakage: float
    epsilon: float            # inf for a model with a non-private stage
    params: dict[str, Any]
    user_attrs: dict[str, Any]


@dataclass(frozen=True)
class Choice:
    winner: Candidate | None
    qualified: bool           # the winner met the policy's bounds (False: the fallback chose it)
    reason: str               # one sentence for reports and winner.json


def epsilon_of(user_attrs: dict[str, Any]) -> float:
    try:
        return float(user_attrs.get("epsilon", math.inf))
    except (TypeError, ValueError):
        return math.inf


def candidates(trials: list[Any]) -> list[Candidate]:
    """Completed Optuna trials (FrozenTrial) as candidates."""
    from optuna.trial import TrialState

    return [Candidate(t.number, float(t.values[0]), float(t.values[1]), epsilon_of(t.user_attrs), dict(t.params),
                      dict(t.user_attrs))
            for t in trials if t.state == TrialState.COMPLETE and t.values is not None]


def pareto_front(cands: list[Candidate]) -> list[Candidate]:
    """Trials no other trial beats on both objectives (higher accuracy and lower leakage), by accuracy."""
    front = [c for c in cands
             if not any(o.accuracy >= c.accuracy and o.leakage <= c.leakage
                        and (o.accuracy > c.accuracy or o.leakage < c.leakage) for o in cands)]
    return sorted(front, key=lambda c: (c.accuracy, -c.leakage))


def choose_winner(cands: list[Candidate], policy: WinnerPolicy, leakage_metric: str = "leakage",
                  search_epsilon: float | None = None) -> Choice:
    """`search_epsilon`: the accounted search's epsilon (mnist_etc.sweep.search_privacy); `max_epsilon` then
    bounds it as well as each trial's own (what is released is the champion *and* its selection)."""
    if not cands:
        return Choice(None, False, "no trial completed, so there is no winner.")

    def released_epsilon(c: Candidate) -> float:
        return c.epsilon if search_epsilon is None else max(c.epsilon, search_epsilon)

    def qualifies(c: Candidate) -> bool:
        return ((policy.max_leakage is None or c.leakage <= policy.max_leakage)
                and (policy.max_epsilon is None or released_epsilon(c) <= policy.max_epsilon))

    by_accuracy = lambda c: (-c.accuracy, c.leakage, c.epsilon, c.number)  # noqa: E731
    ok = [c for c in cands if qualifies(c)]
    rule = policy.describe(leakage_metric)
    if ok:
        w = min(ok, key=by_accuracy)
        return Choice(w, True, f"trial {w.number} has the highest accuracy of the {len(ok)} of {len(cands)} "
                               f"completed trials that meet the policy ({rule}).")
    if policy.fallback == "none":
        return Choice(None, False, f"none of the {len(cands)} completed trials meets the policy ({rule}), "
                                   f"and its fallback is no winner.")
    if policy.fallback == "lowest_leakage":
        w = min(cands, key=lambda c: (c.leakage, -c.accuracy, c.epsilon, c.number))
        how = f"the lowest {leakage_metric}"
    else:
        w = min(cands, key=by_accuracy)
        how = "the highest accuracy"
    return Choice(w, False, f"none of the {len(cands)} completed trials meets the policy ({rule}); by its "
                            f"fallback, trial {w.number} has {how}.")
