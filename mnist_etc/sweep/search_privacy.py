"""Epsilon of a sweep's release: the champion's guarantee must cover the search that chose it.

A trial's own epsilon covers its training. The champion was also *selected*, and the selection looked at
every trial. `account_search_of` bounds the whole search (`search_accounting: private`, the default), with the
theorem that applies to how the space samples:

- **random search** (`sampler: random`, seed left secret): the number of trials K is drawn at random with mean
  `trials` (`trial_count`: logarithmic, geometric or poisson) and only the best trial is released; Papernot and
  Steinke (ICLR 2022) bound that release at a small multiple of one trial (`mnist_etc.dp.private_selection`).
- **an adaptive sampler** (tpe, nsga2, grid), or a random search that ran more trials than it drew (a lost trial
  re-run): the theorem does not cover it, so the trials compose: RDP composition of every trial that trained
  (Mironov 2017, Proposition 1, which allows each trial's settings to depend on earlier results as long as one
  bound holds for every setting the space can draw).

Either way each trial is bounded by the worst candidate of the space (`worst_case_curve`): the least noise and
the most epochs it allows, every batch size and microbatch setting it can draw, the largest delta. A space that
admits a non-private trial (noise 0) has an infinite search epsilon, and the record says why.

What the bound needs of the sweep, and the sweep does: the selection reads only validation accuracy and an
attack on held-out non-members (never a training member: `SearchSpace.attack.members` is false), trials are
drawn independently of the data (random sampler) or composed (adaptive), and the DP randomness is secret.
The other trials' models and figures stay in the sweep's own stores (its study, MLflow runs, trials.csv): the
theorem's bound is for releasing the champion only; were they released too, only the composition would hold,
which the record carries beside it (`epsilon_composed`).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mnist_etc.config import TrainConfig
from mnist_etc.errors import UserError

# How each DP-relevant setting moves a trial's privacy loss, so the worst candidate can be found.
LOWEST_IS_WORST = ("ae_noise_multiplier", "clf_noise_multiplier")   # more noise, less loss
HIGHEST_IS_WORST = ("ae_epochs", "clf_epochs", "delta")              # more steps, more loss; delta: the weakest claim
EVERY_VALUE = ("batch_size", "microbatches")                         # not monotone: each value the space can draw
MAX_CANDIDATES = 2048
ADAPTIVE = ("tpe", "nsga2", "grid")


@dataclass(frozen=True)
class SearchAccount:
    """The privacy of a sweep's release, as winner.json, the summary and the ledger carry it."""

    accounting: str             # "private" or "none"
    method: str                 # "papernot-steinke" | "composition" | "not accounted"
    epsilon_search: float | None  # None: not accounted; inf: a trial is not private
    epsilon_one_trial: float | None   # the worst candidate alone (RDP)
    epsilon_composed: float | None    # every trial that trained, composed (holds whatever is released)
    delta: float
    trials_trained: int
    trial_count: str            # how K was drawn ("fixed: 8" or "logarithmic, mean 8")
    statement: str
    rdp: list[float] | None = None   # the search's RDP curve at DEFAULT_ORDERS (the ledger composes it)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _numbers(values: list[Any], name: str) -> list[float]:
    numeric = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numeric) != len(values):
        raise UserError(f"{name} takes values {values!r}; a private search needs numbers there.")
    return numeric


def dp_candidates(space: Any) -> list[TrainConfig]:
    """The configurations that bound every trial the space can draw (see the module docstring)."""
    choices: dict[str, list[Any]] = {}
    for name in LOWEST_IS_WORST + HIGHEST_IS_WORST + EVERY_VALUE:
        p = space.params.get(name)
        if p is None:
            continue
        if name in LOWEST_IS_WORST:
            choices[name] = [min(_numbers(p.extremes(), name))]
        elif name in HIGHEST_IS_WORST:
            choices[name] = [max(_numbers(p.extremes(), name))]
        else:
            values = p.grid_values()
            if values is None or len(values) > MAX_CANDIDATES:
                raise UserError(f"{space.source}: {name} spans too many values to bound every trial's privacy; "
                                f"give it choices or a step (at most {MAX_CANDIDATES} values), or set "
                                f"search_accounting: none.")
            choices[name] = values
    names = list(choices)
    combos = list(itertools.product(*(choices[n] for n in names)))
    if len(combos) > MAX_CANDIDATES:
        raise UserError(f"{space.source}: {len(combos)} combinations of {', '.join(names)} to bound; narrow them or "
                        f"set search_accounting: none.")
    out = []
    for combo in combos:
        try:
            out.append(space.train_config(dict(zip(names, combo))))
        except UserError:
            continue   # e.g. microbatches that do not divide that batch size: the space never draws it
    if not out:
        raise UserError(f"{space.source}: no valid trial configuration to bound; check its params and fixed.")
    return out


def worst_case_curve(space: Any, n_train: int, orders: tuple[float, ...]) -> tuple[np.ndarray, float]:
    """The pointwise largest RDP curve over `dp_candidates`, and the largest delta a trial can have."""
    from mnist_etc.dp.accounting import training_events
    from mnist_etc.dp.private_selection import trial_rdp, worst_case_rdp

    configs = dp_candidates(space)
    curves = [trial_rdp(training_events(cfg, n_train), orders) for cfg in configs]
    return worst_case_rdp(curves), max(cfg.delta for cfg in configs)


def trial_count_distribution(space: Any) -> Any:
    """K's distribution for a random search: mean `trials`."""
    from mnist_etc.dp.private_selection import Poisson, TruncatedNegativeBinomial

    if space.trial_count == "poisson":
        return Poisson.with_mean(space.trials)
    eta = {"logarithmic": 0.0, "geometric": 1.0}[space.trial_count]
    return TruncatedNegativeBinomial.with_mean(space.trials, eta=eta)


def uses_random_search(space: Any) -> bool:
    """Whether the Papernot-Steinke theorem applies: independent draws, a secret seed, K drawn at random."""
    return space.search_accounting == "private" and space.sampler.name == "random" and space.sampler.seed is None


def account_search_of(space: Any, n_train: int, trials_trained: int, drawn: int | None = None,
                      whatever_asked: bool = False) -> SearchAccount:
    """The search's epsilon for the trials that trained (`drawn`: the K a random search drew). `whatever_asked`:
    account it even under `search_accounting: none` (the ledger's figure; by composition there)."""
    from mnist_etc.dp.private_selection import (DEFAULT_ORDERS, composed_rdp, epsilon_from_rdp, tuned_rdp)

    if space.search_accounting == "none" and not whatever_asked:
        return SearchAccount("none", "not accounted", None, None, None, math.nan, trials_trained,
                             f"fixed: {space.trials}", "The search is not accounted (search_accounting: none): the "
                             "champion's epsilon covers its own training only, not the selection that chose it.")
    orders = tuple(DEFAULT_ORDERS)
    worst, delta = worst_case_curve(space, n_train, orders)
    order_array = np.asarray(orders)
    one = epsilon_from_rdp(order_array, worst, delta)
    composed = epsilon_from_rdp(order_array, composed_rdp(worst, max(trials_trained, 1)), delta)
    random_k = uses_random_search(space)
    count = (f"{space.trial_count}, mean {space.trials} (drawn in secret)" if random_k else f"fixed: {space.trials}")
    if math.isinf(one):
        return SearchAccount("private", "composition", math.inf, math.inf, math.inf, delta, trials_trained, count,
                             "The search is not differentially private: the space admits a trial with a stage "
                             "trained without DP noise (noise multiplier 0), so epsilon_search is infinite.")
    if random_k and drawn is not None and trials_trained <= drawn:
        dist = trial_count_distribution(space)
        eps = epsilon_from_rdp(order_array, tuned_rdp(order_array, worst, dist), delta)
        curve = tuned_rdp(order_array, worst, dist)
        eps = epsilon_from_rdp(order_array, curve, delta)
        return SearchAccount("private", "papernot-steinke", eps, one, composed, delta, trials_trained, count,
                             f"({eps:.3g}, {delta:.3g})-DP for releasing the champion chosen by a random search of "
                             f"K ~ {dist.describe()} trials (Papernot and Steinke, ICLR 2022), each bounded by the "
                             f"worst trial the space can draw ({one:.3g} alone, RDP); the other trials are not "
                             f"released (were they, the {trials_trained} composed give {composed:.3g}).",
                             [float(v) for v in curve])
    why = ("the space does not ask for the search to be accounted (search_accounting: none), so no number of "
           "trials was drawn" if space.search_accounting == "none" else
           f"the {space.sampler.name} sampler chooses trials from earlier results, which the random-search theorem "
           f"does not cover" if space.sampler.name in ADAPTIVE else
           "the sampler's seed is fixed in the space (a known sequence of trials)" if space.sampler.seed is not None
           else f"{trials_trained} trials trained, more than the {drawn} drawn (a lost trial was re-run)")
    return SearchAccount("private", "composition", composed, one, composed, delta, trials_trained, count,
                         f"({composed:.3g}, {delta:.3g})-DP for the whole search: {why}, so the {trials_trained} "
                         f"trials that trained compose (RDP, each bounded by the worst trial the space can draw, "
                         f"{one:.3g} alone).", [float(v) for v in composed_rdp(worst, max(trials_trained, 1))])


def planned_search_epsilon(space: Any, n_train: int) -> SearchAccount:
    """What the search will cost before it runs: `trials` trials (composition) or the random search's bound."""
    return account_search_of(space, n_train, space.trials, drawn=space.trials if uses_random_search(space) else None)


def sweep_ledger(space: Any, trials: list[Any], account: SearchAccount, champion: int, n_train: int,
                 model: str) -> Any:
    """The champion's privacy ledger: every trial's training (the champion's published with it, the others kept in
    the sweep's stores) and the selection. With `search_accounting: none` the selection is still composed here,
    since the ledger states what holds whatever the space asked to report."""
    from mnist_etc.dp.accounting import privacy_report
    from mnist_etc.dp.ledger import Entry, Ledger

    from optuna.trial import TrialState

    bound = account if account.method != "not accounted" else account_search_of(
        space, n_train, account.trials_trained, whatever_asked=True)
    ledger = Ledger.new(model, bound.delta)
    selection = f"selection of the champion by the search ({bound.method})"
    for t in trials:
        if t.state == TrialState.WAITING:
            continue
        try:
            cfg = space.train_config(t.params)
        except UserError:
            continue   # refused before it trained
        eps = privacy_report(cfg, n_train).epsilon
        is_champion = t.number == champion
        ledger.add(Entry(f"training of trial {t.number}" + (" (the champion)" if is_champion else ""), "training",
                         eps, cfg.delta, "PLD", covered_by=selection,
                         published=("the champion: registered model, Triton export" if is_champion else
                                    "the sweep's own stores (study, MLflow run, trials.csv)")))
    ledger.add(Entry(selection, "selection", math.inf if bound.epsilon_search is None else bound.epsilon_search,
                     bound.delta, f"RDP, {bound.method}", rdp=bound.rdp,
                     published="winner.json, the summary, the registered model's tags"))
    return ledger
