"""What releasing a sweep's champion costs (mnist_etc.sweep.search_privacy) and its ledger (mnist_etc.dp.ledger):
checked against independent dp_accounting computations, with the sweep's own spaces."""
from __future__ import annotations

import math
from pathlib import Path

import dp_accounting
import numpy as np
import pytest
from dp_accounting import rdp

from mnist_etc.config import TrainConfig
from mnist_etc.dp.accounting import privacy_report
from mnist_etc.dp.ledger import Entry, Ledger, read_ledger, render_ledger, write_ledger
from mnist_etc.dp.private_selection import DEFAULT_ORDERS
from mnist_etc.errors import UserError
from mnist_etc.sweep.search_privacy import account_search_of, dp_candidates, planned_search_epsilon
from mnist_etc.sweep.space import load_search_space, parse_search_space

ROOT = Path(__file__).resolve().parents[1]
N = 3500


def space(**changes):
    raw = {"study": "s", "sampler": {"name": "random"}, "trials": 8,
           "params": {"hid_dim": {"type": "categorical", "choices": [8, 16]},
                      "ae_noise_multiplier": {"type": "categorical", "choices": [0.9, 1.3]},
                      "ae_epochs": {"type": "int", "low": 2, "high": 4},
                      "batch_size": {"type": "categorical", "choices": [32, 64]}},
           "fixed": {"clf_epochs": 5, "clf_noise_multiplier": 1.1}, "winner": {"max_epsilon": None}}
    raw.update(changes)
    return parse_search_space(raw)


def independent_rdp_epsilon(cfg: TrainConfig, n: int, trials: int) -> float:
    """`trials` trainings of `cfg` composed, by dp_accounting's own RDP accountant."""
    events = []
    for epochs, sigma in ((cfg.ae_epochs, cfg.ae_noise_multiplier), (cfg.clf_epochs, cfg.clf_noise_multiplier)):
        step = dp_accounting.PoissonSampledDpEvent(cfg.batch_size / n, dp_accounting.GaussianDpEvent(sigma))
        events.append(dp_accounting.SelfComposedDpEvent(step, epochs * (n // cfg.batch_size)))
    accountant = rdp.RdpAccountant(list(DEFAULT_ORDERS))
    accountant.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.ComposedDpEvent(events), trials))
    return accountant.get_epsilon(cfg.delta)


def test_the_worst_candidate_is_least_noise_most_epochs_every_batch_size():
    candidates = dp_candidates(space())
    assert {c.ae_noise_multiplier for c in candidates} == {0.9} and {c.ae_epochs for c in candidates} == {4}
    assert {c.batch_size for c in candidates} == {32, 64}


def test_an_adaptive_sampler_composes_every_trial_at_the_worst_candidate():
    tpe = space(sampler={"name": "tpe", "seed": 0})
    account = account_search_of(tpe, N, trials_trained=8)
    assert account.method == "composition" and "tpe sampler" in account.statement
    worst = max(independent_rdp_epsilon(c, N, 8) for c in dp_candidates(tpe))
    # the pointwise max over candidates is at least each candidate's own: never below the worst single one
    assert account.epsilon_search >= worst - 1e-9
    assert account.epsilon_search == pytest.approx(worst, rel=0.05)


def test_a_private_random_search_costs_far_less_than_composing_its_trials():
    account = account_search_of(space(), N, trials_trained=8, drawn=8)
    assert account.method == "papernot-steinke"
    assert account.epsilon_one_trial < account.epsilon_search < account.epsilon_composed
    # a model's own (PLD) epsilon is below the search's: what is released includes the selection
    champion = privacy_report(TrainConfig(ae_noise_multiplier=0.9, ae_epochs=4, clf_epochs=5, clf_noise_multiplier=1.1,
                                          batch_size=64), N).epsilon
    assert account.epsilon_search > champion


def test_a_re_run_beyond_the_drawn_count_falls_back_to_composition():
    account = account_search_of(space(), N, trials_trained=9, drawn=8)
    assert account.method == "composition" and "more than the 8 drawn" in account.statement


def test_a_non_private_trial_makes_the_search_infinite_and_says_why():
    leaky = space(params={"ae_noise_multiplier": {"type": "categorical", "choices": [0.0, 1.0]}})
    account = planned_search_epsilon(leaky, N)
    assert math.isinf(account.epsilon_search) and "without DP noise" in account.statement
    assert account_search_of(leaky.replace(search_accounting="none"), N, 4).epsilon_search is None


def test_the_shipped_spaces_are_private_searches_within_their_policy():
    for name in ("smoke", "default"):
        s = load_search_space(ROOT / "search_spaces" / f"{name}.yaml")
        planned = planned_search_epsilon(s, N)
        assert planned.method == "papernot-steinke", name
        assert planned.epsilon_search <= s.winner.max_epsilon, name


def test_a_search_its_own_policy_cannot_accept_is_refused_before_training(tmp_path):
    from mnist_etc.sweep.orchestrator import preflight

    s = load_search_space(ROOT / "search_spaces" / "smoke.yaml").replace(sampler={"name": "tpe", "seed": 0})
    with pytest.raises(UserError, match=r"epsilon_search 1\d\.\d .*composition.*above winner.max_epsilon 10"):
        preflight(s)


def test_a_sweep_attacks_no_training_member():
    assert space().attack.members is False
    with pytest.raises(UserError, match="attack.members must be false in a sweep"):
        space(attack={"members": True})


def test_the_ledger_composes_what_was_released_and_flags_statistics_of_members(tmp_path):
    orders = list(DEFAULT_ORDERS)
    one = rdp.RdpAccountant(orders)
    one.compose(dp_accounting.GaussianDpEvent(2.0))
    curve = [float(v) for v in one._rdp]
    ledger = Ledger("m", 1e-5, [float(o) for o in orders])
    ledger.add(Entry("training of trial 0", "training", 0.5, 1e-5, "PLD", covered_by="selection"))
    ledger.add(Entry("selection", "selection", one.get_epsilon(1e-5), 1e-5, "RDP", rdp=curve))
    ledger.add(Entry("canary audit run", "canary audit", one.get_epsilon(1e-5), 1e-5, "RDP", rdp=curve))
    totals = ledger.totals()
    two = rdp.RdpAccountant(orders)
    two.compose(dp_accounting.GaussianDpEvent(2.0), 2)
    assert totals["release"]["epsilon"] == pytest.approx(two.get_epsilon(1e-5))   # covered entries do not add
    assert totals["with_statistics"] == totals["release"]
    ledger.add(Entry("membership AUC", "statistic of members", math.inf, 0.0, "none"))
    assert ledger.totals()["with_statistics"]["epsilon"] == "inf" and "not private" in render_ledger(ledger)
    again = read_ledger(write_ledger(ledger, tmp_path / "privacy_ledger.json"))
    assert again.totals() == ledger.totals() and len(again.entries) == 4


def test_a_private_random_search_does_not_continue_another_search(tmp_path):
    """K independent draws cannot include trials an earlier (adaptive) search chose: resuming such a study as a
    private random search is refused with one sentence."""
    import optuna

    from mnist_etc.sweep.orchestrator import DRAWN_ATTR, drawn_trial_count

    s = space()
    study = optuna.create_study(directions=s.directions)
    assert drawn_trial_count(study, s.replace(sampler={"name": "tpe", "seed": 0})) is None
    k = drawn_trial_count(study, s)
    assert k >= 1 and study.user_attrs[DRAWN_ATTR] == k and drawn_trial_count(study, s) == k   # kept on resume
    other = optuna.create_study(directions=s.directions)
    other.add_trial(optuna.trial.create_trial(values=[0.5, 0.1]))
    with pytest.raises(UserError, match="already holds 1 trial\\(s\\) of a search that was not a private random"):
        drawn_trial_count(other, s)
