"""The audit's measurements and verdict, with the in-process model as the scored surface.

The served (Triton) surface is exercised end to end in tests/test_deployments.py."""
import json

import pytest

from mnist_etc.privacy.attacks.hill_climb import in_process_scorer
from mnist_etc.privacy.audit import AuditConfig, judge, previous_audit, run_audit
from mnist_etc.privacy.audit_report import save_audit
from mnist_etc.config import AttackConfig
from mnist_etc.errors import UserError

TINY_AUDIT = AuditConfig(attack=AttackConfig(victims=3, n_iter=30, n_samples=32, n_best=8), membership_samples=100)


def test_audit_measures_saves_and_judges(tiny_model, tiny_split, tmp_path):
    rec = run_audit(tiny_model, tiny_split, in_process_scorer(tiny_model.networks), TINY_AUDIT, progress=False)
    # The same model scored two ways: the served-surface attack and the in-process one must agree exactly.
    assert rec["served_attack"]["summary"] == pytest.approx(rec["in_process_attack"]["summary"])
    assert rec["served_attack"]["queries"] == 3 * 32 * 30
    rec.update(lineage="tiny", created="2026-11-27T00:00:00+00:00")
    rec["verdict"] = judge(rec, None, TINY_AUDIT)
    assert rec["verdict"]["passed"] == (rec["served_attack"]["summary"]["direct_cosine"] <= 0.9)
    out = save_audit(rec, tmp_path / "2026-11-27T000000Z")
    saved = json.loads((out / "audit.json").read_text())
    assert saved["membership"]["n_members"] == 100 and (out / "grid.png").is_file()
    assert "Membership inference" in (out / "report.md").read_text()
    assert previous_audit(tmp_path, "tiny")["created"] == "2026-11-27T00:00:00+00:00"
    assert previous_audit(tmp_path, "other") is None


def test_verdict_fails_on_bound_and_on_growth():
    cfg = AuditConfig(leakage_bound=0.7, growth_margin=0.05)
    now = {"served_attack": {"summary": {"direct_cosine": 0.75}}}
    before = {"created": "yesterday", "served_attack": {"summary": {"direct_cosine": 0.6}}}
    v = judge(now, before, cfg)
    assert not v["passed"] and len(v["reasons"]) == 2
    assert v["growth"] == pytest.approx(0.15)
    ok = judge({"served_attack": {"summary": {"direct_cosine": 0.62}}}, before, cfg)
    assert ok["passed"] and ok["reasons"] == []


def test_bad_audit_settings():
    with pytest.raises(UserError, match="leakage_bound must be a cosine similarity in \\(0, 1\\]"):
        AuditConfig(leakage_bound=1.5)
    with pytest.raises(UserError, match="growth_margin"):
        AuditConfig(growth_margin=-0.1)
