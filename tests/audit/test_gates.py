"""Each gate's three verdicts on constructed records, judged by the real `judge`, and the audit's verdict as an
intersection-union test."""
import math

import pytest

from mnist_etc.audit.config import AuditConfig
from mnist_etc.audit.gates import audit_verdict, judge
from mnist_etc.audit.gates.base import samples_to_settle


def record(eps=3.0, excess=(0.01, -0.02, 0.04), auc=(0.52, 0.48, 0.56), victims=130, **extra):
    return {"privacy": {"epsilon": eps},
            "served_attack": {"attack": "public-prior",
                              "summary": {"excess_cosine": excess[0], "excess_cosine_low": excess[1],
                                          "excess_cosine_high": excess[2], "victims_per_group": victims}},
            "membership": {"auc": auc[0], "auc_low": auc[1], "auc_high": auc[2], "n_members": 500}, **extra}


def gate(rec, name, previous=None, cfg=None):
    v = judge(rec, previous, cfg or AuditConfig())
    tests = {t["name"]: t for t in v["tests"]}
    return tests.get(name), v


@pytest.mark.parametrize("excess, verdict", [((0.03, 0.02, 0.04), "PASS"), ((0.05, 0.04, 0.05), "PASS"),
                                             ((0.08, 0.06, 0.10), "FAIL"), ((0.05, 0.04, 0.06), "INCONCLUSIVE")])
def test_leakage_gate_decides_on_the_safe_side_of_the_interval(excess, verdict):
    t, _ = gate(record(excess=excess), "excess_leakage")
    assert t["verdict"] == verdict and t["passed"] == (verdict == "PASS")
    assert (t["n_needed"] is not None) == (verdict == "INCONCLUSIVE" and excess[0] != 0.05)


def test_inconclusive_says_how_many_victims_would_settle_it():
    # Half-width 0.015, estimate 0.01 from the bound: 50 x (0.015 / 0.01)^2 = 112.5 -> 113 victims per group.
    t, _ = gate(record(excess=(0.06, 0.045, 0.075), victims=50), "excess_leakage")
    assert t["verdict"] == "INCONCLUSIVE" and t["n_needed"] == 113 and "about 113 victims per group" in t["explanation"]
    assert samples_to_settle(50, 0.05, 0.04, 0.06, 0.05) is None   # on the bound: no size settles it
    t, _ = gate(record(excess=(0.05, 0.03, 0.07)), "excess_leakage")
    assert t["n_needed"] is None and "no number of victims per group settles it" in t["explanation"]


@pytest.mark.parametrize("auc, verdict", [((0.55, 0.52, 0.58), "PASS"), ((0.66, 0.62, 0.70), "FAIL"),
                                          ((0.58, 0.55, 0.61), "INCONCLUSIVE")])
def test_membership_auc_gate(auc, verdict):
    t, _ = gate(record(auc=auc), "membership")
    assert t["verdict"] == verdict
    assert "pure 0.41-DP" in t["bound"]   # the bound's reason travels with it


@pytest.mark.parametrize("now, before, verdict", [
    ((0.02, 0.01, 0.03), (0.00, -0.01, 0.01), "PASS"),        # +0.02, half-width 0.014: [+0.006, +0.034]
    ((0.10, 0.09, 0.11), (0.00, -0.01, 0.01), "FAIL"),        # +0.10 [+0.086, +0.114]
    ((0.05, 0.03, 0.07), (0.00, -0.02, 0.02), "INCONCLUSIVE"),   # +0.05 +- 0.028
    ((0.07, 0.06, 0.08), (0.02, 0.00, 0.04), "INCONCLUSIVE"),   # point change 0.05: on the margin
])
def test_growth_gate_compares_intervals_not_points(now, before, verdict):
    previous = dict(record(excess=before), created="yesterday")
    t, v = gate(record(excess=now), "growth", previous)
    assert t["verdict"] == verdict
    half = math.hypot((now[2] - now[1]) / 2, (before[2] - before[1]) / 2)
    assert v["growth_interval"] == pytest.approx([now[0] - before[0] - half, now[0] - before[0] + half])


def test_growth_without_a_previous_audit_does_not_apply():
    t, v = gate(record(), "growth")
    assert t is None and v["verdict"] == "PASSED"
    assert "no earlier audit" in {n["name"]: n for n in v["not_applicable"]}["growth"]["explanation"]


def test_epsilon_gate_is_deterministic():
    assert gate(record(eps=3.0), "epsilon")[0]["verdict"] == "PASS"
    assert gate(record(eps=12.0), "epsilon")[0]["verdict"] == "FAIL"
    assert gate(record(eps="inf"), "epsilon")[0]["verdict"] == "FAIL"
    assert gate(record(eps="inf"), "epsilon", cfg=AuditConfig(allow_non_private=True))[0]["verdict"] == "PASS"


CANARY = {"epsilon_lb": 1.9, "epsilon_lb_steinke": 1.2, "accounted_epsilon": 4.0, "rejects_accounted": False,
          "catches_2x": True, "expected_epsilon_lb": 2.1, "consistent": True}


@pytest.mark.parametrize("changes, verdict, words", [
    ({}, "PASS", "would have caught noise mis-scaled 2x"),
    ({"catches_2x": False}, "INCONCLUSIVE", "would not have caught"),
    ({"catches_2x": None}, "INCONCLUSIVE", "older canary audit"),
    ({"rejects_accounted": True, "consistent": False}, "FAIL", "rejects the accounted trade-off curve"),
    ({"epsilon_lb": 5.0, "consistent": False}, "FAIL", "accounting or the DP-SGD code is wrong"),
])
def test_canary_gate(changes, verdict, words):
    canary = {k: v for k, v in {**CANARY, **changes}.items() if v is not None}
    t, _ = gate(record(eps=4.2, canary_audit=canary), "canary_audit")
    assert t["verdict"] == verdict and words in t["explanation"]
    assert "Steinke et al.: 1.200" in t["explanation"] and "about 2.100 in expectation" in t["explanation"]


def test_membership_epsilon_gate():
    rec = record(eps=2.0)
    rec["membership"]["membership_epsilon_lb"] = 0.4
    assert gate(rec, "membership_epsilon")[0]["verdict"] == "PASS"
    rec["membership"]["membership_epsilon_lb"] = 2.5   # a lower bound above the accounted epsilon: a DP bug
    t, v = gate(rec, "membership_epsilon")
    assert t["verdict"] == "FAIL" and v["verdict"] == "FAILED" and "DP-SGD code is wrong" in t["explanation"]
    inf = record(eps="inf")
    inf["membership"]["membership_epsilon_lb"] = 2.5
    t, v = gate(inf, "membership_epsilon", cfg=AuditConfig(allow_non_private=True))
    assert t is None and "2.500" in {n["name"]: n for n in v["not_applicable"]}["membership_epsilon"]["explanation"]


def reconstruction(members, bound=(0.30, 0.20, 0.40), n=130):
    rate, low, high = members
    return {"candidates": 51, "bound": bound[0], "bound_low": bound[1], "bound_high": bound[2], "bound_chance": 0.11,
            "members": n, "members_identified": round(rate * n), "members_identification_rate": rate,
            "members_identification_low": low, "members_identification_high": high}


@pytest.mark.parametrize("members, verdict", [((0.10, 0.06, 0.17), "PASS"), ((0.60, 0.51, 0.69), "FAIL"),
                                              ((0.25, 0.18, 0.33), "INCONCLUSIVE")])
def test_reconstruction_gate(members, verdict):
    t, _ = gate(record(reconstruction=reconstruction(members)), "reconstruction")
    assert t["verdict"] == verdict


def test_reconstruction_gate_has_no_bound_for_epsilon_inf():
    r = {**reconstruction((0.2, 0.1, 0.3)), "bound": None, "reason": "no bound: epsilon = inf"}
    t, v = gate(record(eps="inf", reconstruction=r), "reconstruction", cfg=AuditConfig(allow_non_private=True))
    assert t is None and {n["name"]: n for n in v["not_applicable"]}["reconstruction"]["explanation"] == \
        "no bound: epsilon = inf"


def test_identification_above_the_dp_bound_fails_the_audit():
    """The section built by the real code from a DP model's events: members identified far more often than the
    bound allows (given how often the same attacker identifies non-members) fails the audit."""
    import numpy as np

    from mnist_etc.audit.reconstruction import reconstruction_record
    from mnist_etc.config import TrainConfig
    from mnist_etc.dp.accounting import training_events

    cfg = TrainConfig(ae_noise_multiplier=1.1, clf_noise_multiplier=1.1)   # epsilon about 4 on 3,500 digits
    events = training_events(cfg, 3500)
    member = np.repeat([True, False], 130)
    ranks = np.full(260, 7)
    ranks[:104] = 1          # 80% of members identified
    ranks[130:136] = 1       # 6 of 130 non-members (4.6%)
    r = reconstruction_record(ranks, member, events, candidates=51)
    assert r["members_identification_rate"] == pytest.approx(0.8) and r["non_members_identified"] == 6
    assert r["kappa_chance"] < r["bound_chance"] < r["bound"] and r["bound_low"] < r["bound"] < r["bound_high"] < 0.5
    v = judge(record(eps=4.0, reconstruction=r), None, AuditConfig())
    t = {t["name"]: t for t in v["tests"]}["reconstruction"]
    assert t["verdict"] == "FAIL" and v["verdict"] == "FAILED" and not v["passed"]
    assert "DP bug" in t["explanation"]
    # The same attacker identifying members as often as non-members (6 of 130) is within the bound: members'
    # high end 0.098 against b(non-members' low end) 0.101.
    ranks[:104], ranks[:6] = 7, 1
    same = judge(record(eps=4.0, reconstruction=reconstruction_record(ranks, member, events, 51)), None, AuditConfig())
    assert {t["name"]: t for t in same["tests"]}["reconstruction"]["verdict"] == "PASS"


@pytest.mark.parametrize("verdicts, audit", [
    (["PASS", "PASS"], "PASSED"), (["PASS", "INCONCLUSIVE"], "INCONCLUSIVE"), (["INCONCLUSIVE", "FAIL"], "FAILED"),
    (["PASS", "FAIL", "PASS"], "FAILED"), ([], "PASSED")])
def test_audit_verdict_is_an_intersection_union_test(verdicts, audit):
    assert audit_verdict(verdicts) == audit


@pytest.mark.parametrize("policy, passed", [("fail", False), ("pass", True)])
def test_inconclusive_policy_decides_only_inconclusive_audits(policy, passed):
    cfg = AuditConfig(inconclusive=policy)
    inconclusive = judge(record(excess=(0.05, 0.04, 0.06)), None, cfg)
    assert inconclusive["verdict"] == "INCONCLUSIVE" and inconclusive["passed"] is passed
    assert inconclusive["inconclusive_policy"] == policy
    assert judge(record(excess=(0.09, 0.06, 0.12)), None, cfg)["passed"] is False   # FAILED never passes
    assert judge(record(), None, cfg)["passed"] is True
