"""The audit's measurements and verdict, with the in-process model as the scored surface.

The served (Triton) surface is exercised end to end in tests/test_deployments.py."""
import json

import pytest

from mnist_etc.audit.attacks.config import AttackConfig
from mnist_etc.errors import UserError
from mnist_etc.audit.attacks.hill_climb import compiled
from mnist_etc.audit.config import AuditConfig
from mnist_etc.audit.gates import judge
from mnist_etc.audit.record import audit_summary
from mnist_etc.audit.run import previous_audit, run_audit
from mnist_etc.audit.report import save_audit

QUICK = AttackConfig(victims=50, n_iter=2, n_samples=32, n_best=8)
TINY_AUDIT = AuditConfig(attack=QUICK, membership_samples=100)


def synthetic(eps="inf", excess=(0.01, -0.02, 0.04), auc=(0.52, 0.48, 0.56)):
    return {"privacy": {"epsilon": eps},
            "served_attack": {"attack": "public-prior",
                              "summary": {"excess_cosine": excess[0], "excess_cosine_low": excess[1],
                                          "excess_cosine_high": excess[2]}},
            "membership": {"auc": auc[0], "auc_low": auc[1], "auc_high": auc[2]}}


def by_name(verdict):
    return {t["name"]: t for t in verdict["tests"]}


@pytest.fixture(scope="module")
def tiny_audit(tiny_model, tiny_split, tmp_path_factory):
    return run_audit(tiny_model, tiny_split, compiled(tiny_model.networks.full_model()), TINY_AUDIT,
                     progress=False, cache_dir=tmp_path_factory.mktemp("cache"))


def test_audit_measures_saves_and_judges(tiny_audit, tmp_path):
    rec = tiny_audit
    # The same model scored two ways: the served-surface attack and the in-process one must agree exactly.
    assert rec["served_attack"]["summary"] == pytest.approx(rec["in_process_attack"]["summary"])
    assert rec["served_attack"]["attack"] == "public-prior" and rec["own_decoder_attack"]["attack"] == "own-decoder"
    assert rec["served_attack"]["summary"]["victims_per_group"] == 50
    for key in ("served_attack", "in_process_attack", "own_decoder_attack"):
        assert rec[key]["images_per_second"] > 0 and rec[key]["images_scored"] >= rec[key]["queries"] > 0
    rec.update(lineage="tiny", created="2026-11-27T00:00:00+00:00")
    rec["verdict"] = judge(rec, None, TINY_AUDIT)
    # The tiny model is not private: the default policy fails it on epsilon, whatever else it measured.
    assert not rec["verdict"]["passed"] and not by_name(rec["verdict"])["epsilon"]["passed"]
    assert "epsilon = inf" in rec["verdict"]["reasons"][0]
    allowed = judge(rec, None, AuditConfig(attack=QUICK, allow_non_private=True, leakage_bound=1.0))
    assert by_name(allowed)["epsilon"]["passed"] and by_name(allowed)["excess_leakage"]["passed"]
    out = save_audit(rec, tmp_path / "2026-11-27T000000Z")
    saved = json.loads((out / "audit.json").read_text())
    assert saved["membership"]["n_members"] == 100 and (out / "grid.png").is_file() and (out / "roc.png").is_file()
    assert "p_value" in saved["membership"] and "_membership_scores" not in saved
    report = (out / "report.md").read_text()
    assert "| epsilon | inf |" in report and "FAIL" in report and "Membership inference" in report
    assert "at 0.1% FPR" in report and "One-run canary audit: not run" in report and "roc.png" in report
    assert "own-decoder in process" in report and "images scored per second" in report
    assert "privacy of training: epsilon inf;" in report
    summary = audit_summary(saved | {"report_dir": str(out)})
    assert summary["epsilon"] == float("inf") and not summary["passed"]  # "inf" in JSON reads back as inf
    assert [t["name"] for t in summary["tests"]] == ["epsilon", "excess_leakage", "membership"]
    assert summary["verdict"] == "FAILED" and summary["reconstruction_bound"] is None
    # The tiny model is not private: the reconstruction section measures, but has no bound, and says so.
    r = saved["reconstruction"]
    assert r["bound"] is None and r["reason"] == "no bound: epsilon = inf" and r["members"] == 50
    assert r["members_identified"] == round(r["members_identification_rate"] * 50)
    assert "no bound: epsilon = inf" in report and "membership_epsilon_lb" in report
    assert "intersection-union" in report and "| **FAIL** |" in report
    assert 0 <= saved["membership"]["membership_epsilon_lb"] and saved["membership"]["membership_epsilon"]["delta"] > 0
    assert previous_audit(tmp_path, "tiny")["created"] == "2026-11-27T00:00:00+00:00"
    assert previous_audit(tmp_path, "other") is None


def test_report_shows_each_verdict_and_the_bounds_beside_the_measurements(tiny_audit):
    """The tiny audit's measurements, as if the model were DP (epsilon 4 on 3,500 digits): the report carries the
    verdict column, the intersection-union sentence, membership_epsilon_lb beside the accounted epsilon, the
    reconstruction bound beside the members' rate, and the AUC bound's reason."""
    import numpy as np

    from mnist_etc.audit.reconstruction import reconstruction_record
    from mnist_etc.audit.report import render_markdown
    from mnist_etc.config import TrainConfig
    from mnist_etc.dp.accounting import training_events

    rec = {k: v for k, v in tiny_audit.items() if not k.startswith("_")}
    rec.update(lineage="tiny", created="2026-11-28T00:00:00+00:00", privacy={"epsilon": 4.0, "statement": "DP"})
    member = np.repeat([True, False], 50)
    ranks = np.where(np.arange(100) % 10 == 0, 1, 5)   # 5 of 50 identified in each group
    rec["reconstruction"] = reconstruction_record(ranks, member, training_events(TrainConfig(
        ae_noise_multiplier=1.1, clf_noise_multiplier=1.1), 3500), 51)
    rec["verdict"] = judge(rec, None, AuditConfig(attack=QUICK, leakage_bound=1.0, membership_auc_bound=1.0))
    report = render_markdown(rec)
    names = {t["name"]: t for t in rec["verdict"]["tests"]}
    assert {"membership_epsilon", "reconstruction"} <= set(names)
    assert f"| reconstruction | 0.1000 | <= {rec['reconstruction']['bound']:.3f}" in report
    assert f"**{names['reconstruction']['verdict']}**" in report and "intersection-union" in report
    lb = rec["membership"]["membership_epsilon_lb"]
    assert f"**membership_epsilon_lb {lb:.3f}** (95%) beside the accounted epsilon **4**" in report
    assert f"members' identification rate at most {rec['reconstruction']['bound']:.3f}" in report
    assert "measured: members identified 0.100" in report and "pure epsilon-DP mechanism" in report
    assert "| canary_audit | - | - | does not apply |" in report
    assert report.startswith(f"# Privacy audit {rec['verdict']['verdict']}")


def test_each_gate_fails_on_its_own():
    cfg = AuditConfig(max_epsilon=5.0, leakage_bound=0.05, membership_auc_bound=0.6, growth_margin=0.05)
    ok = judge(synthetic(eps=3.0), None, cfg)
    assert ok["verdict"] == "PASSED" and ok["passed"] and ok["reasons"] == [] and len(ok["tests"]) == 3
    assert not by_name(judge(synthetic(eps=7.5), None, cfg))["epsilon"]["passed"]
    assert not by_name(judge(synthetic(eps="inf"), None, cfg))["epsilon"]["passed"]
    assert by_name(judge(synthetic(eps="inf"), None, AuditConfig(allow_non_private=True)))["epsilon"]["passed"]
    leaky = judge(synthetic(eps=3.0, excess=(0.12, 0.07, 0.17)), None, cfg)
    assert leaky["verdict"] == "FAILED" and leaky["reasons"][0].startswith("excess_leakage FAIL:")
    # An interval that reaches over the bound is no longer a pass: safety is not shown, so INCONCLUSIVE, which
    # fails the audit by default and passes it only under inconclusive: pass.
    straddles = judge(synthetic(eps=3.0, excess=(0.05, 0.02, 0.08)), None, cfg)
    assert straddles["verdict"] == "INCONCLUSIVE" and not straddles["passed"]
    assert by_name(straddles)["excess_leakage"]["verdict"] == "INCONCLUSIVE"
    assert judge(synthetic(eps=3.0, excess=(0.05, 0.02, 0.08)), None, cfg.replace(inconclusive="pass"))["passed"]
    member = judge(synthetic(eps=3.0, auc=(0.7, 0.65, 0.75)), None, cfg)
    assert by_name(member)["membership"]["verdict"] == "FAIL" and member["verdict"] == "FAILED"
    before = dict(synthetic(eps=3.0, excess=(-0.08, -0.1, -0.06)), created="yesterday")
    grown = judge(synthetic(eps=3.0), before, cfg)
    assert by_name(grown)["growth"]["verdict"] == "FAIL" and grown["growth"] == pytest.approx(0.09)


def test_old_format_previous_audits_are_tolerated(tmp_path):
    old = tmp_path / "2026-01-01T000000Z"
    old.mkdir()
    (old / "audit.json").write_text(json.dumps({"lineage": "m", "created": "2026-01-01",
                                                "served_attack": {"summary": {"direct_cosine": 0.7}}}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "audit.json").write_text("{not json")
    previous = previous_audit(tmp_path, "m")
    v = judge(synthetic(eps=1.0), previous, AuditConfig())
    assert "growth" not in by_name(v) and v["growth"] is None and v["passed"]
    assert "2026-01-01 has none" in {t["name"]: t for t in v["not_applicable"]}["growth"]["explanation"]


@pytest.mark.parametrize("previous", [
    {"created": "a", "served_attack": None},
    {"created": "b", "served_attack": {"summary": None}},
    {"created": "c", "served_attack": {"attack": "public-prior", "summary": {"excess_cosine": "nan"}}},
    {"created": "d", "served_attack": {"attack": "own-decoder", "summary": {"excess_cosine": -0.3}}},
    {"created": "e", "served_attack": {"summary": {"excess_cosine": -0.3}}},  # no attacker named: not comparable
    {"created": "f", "served_attack": {"attack": "public-prior", "summary": {"excess_cosine": -0.3}}},  # no interval
])
def test_growth_is_skipped_without_a_comparable_previous_figure(previous):
    v = judge(synthetic(eps=1.0), previous, AuditConfig())
    assert v["passed"] and v["growth"] is None and v["previous"] == previous["created"]
    assert [t["name"] for t in v["not_applicable"]] == ["membership_epsilon", "reconstruction", "canary_audit",
                                                         "growth"]


def test_canary_audit_above_the_accounted_epsilon_fails_the_audit():
    canary = {"epsilon_lb": 1.7, "accounted_epsilon": 0.19, "consistent": False, "confidence": 0.95,
              "canaries": 1000, "correct": 356, "guesses": 400}
    v = judge(synthetic(eps=0.2) | {"canary_audit": canary}, None, AuditConfig())
    test = by_name(v)["canary_audit"]
    assert v["verdict"] == "FAILED" and test["verdict"] == "FAIL" and test["figure"] == 1.7
    assert "accounting or the DP-SGD code is wrong" in test["explanation"]
    # An older record that does not say whether it could catch a 2x error cannot vouch for the accounting.
    old = judge(synthetic(eps=3.0) | {"canary_audit": {**canary, "epsilon_lb": 0.2, "accounted_epsilon": 3.0,
                                                        "consistent": True}}, None, AuditConfig())
    assert by_name(old)["canary_audit"]["verdict"] == "INCONCLUSIVE" and old["verdict"] == "INCONCLUSIVE"
    assert AuditConfig().wants_canary_audit(3.0) and not AuditConfig().wants_canary_audit(float("inf"))
    assert AuditConfig(canary_audit=True).wants_canary_audit(float("inf"))


@pytest.mark.parametrize("kwargs, sentence", [
    (dict(leakage_bound=5.0), "leakage_bound must be a number in [-1, 2], got 5.0."),
    (dict(growth_margin=-0.1), "growth_margin must be a number in [0, 2], got -0.1."),
    (dict(membership_auc_bound=0.3), "membership_auc_bound must be a number in [0.5, 1], got 0.3."),
    (dict(max_epsilon=float("inf")), "max_epsilon must be a finite number >= 0, got inf."),
    (dict(attack=AttackConfig(victims=10)), "victims must be at least 50 per group"),
    (dict(attack=AttackConfig(attack="own-decoder", victims=50)),
     "the audit's served attack must be 'public-prior' (the outsider"),
    (dict(allow_non_private="yes"), "allow_non_private must be true or false, got 'yes'."),
    (dict(compare_in_process=1), "compare_in_process must be true or false, got 1."),
    (dict(membership_samples=5), "membership_samples must be an integer >= 10, got 5."),
    (dict(inconclusive="maybe"), "inconclusive must be one of"),
])
def test_bad_audit_policy(kwargs, sentence):
    with pytest.raises(UserError, match=sentence.replace("[", "\\[").replace("(", "\\(").replace(".", "\\.")):
        AuditConfig(**kwargs)


def test_every_gate_module_is_listed_once_and_a_listed_gate_is_judged():
    """A new gate is one module and one line in GATES: a Gate subclass defined in gates/ but not listed would
    silently never run."""
    import importlib
    import pkgutil

    from mnist_etc.audit import gates
    from mnist_etc.audit.gates.base import Gate

    defined = set()
    for info in pkgutil.iter_modules(gates.__path__):
        module = importlib.import_module(f"mnist_etc.audit.gates.{info.name}")
        defined |= {obj for obj in vars(module).values()
                    if isinstance(obj, type) and issubclass(obj, Gate) and obj is not Gate}
    listed = [type(g) for g in gates.GATES]
    assert set(listed) == defined and len(listed) == len(set(listed))
    assert len({g.name for g in gates.GATES}) == len(gates.GATES)
    v = judge(synthetic(eps=3.0), None, AuditConfig())
    judged = [t["name"] for t in v["tests"]] + [t["name"] for t in v["not_applicable"]]
    assert sorted(judged) == sorted(g.name for g in gates.GATES)   # every gate accounted for, judged or not
