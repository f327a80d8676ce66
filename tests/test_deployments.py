"""The day-to-day path, for real: a Prefect server, the process work pool, `prefect deploy --all` of the
repository's prefect.yaml, a worker, and `prefect deployment run 'privacy-audit/nightly' --watch`.

The session world (a tiny sweep of search_spaces/audit.yaml run through the stack, tests/conftest.py) and an
export into its temporary directory give the audit a champion registered in MLflow and served by the
embedded Triton; every path is passed as a deployment parameter, so nothing lands in the repository's own
artifacts/. The stack is the session's one (`stack` in
tests/conftest.py), shared with the browser tests.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import audit_params

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_all_deployments_exist_and_the_audit_is_scheduled_nightly(stack):
    done = run([str(BIN / "prefect"), "deployment", "ls"], stack["env"])
    assert done.returncode == 0, done.stderr
    for name in ("sweep/default", "sweep/scaled", "trial/default", "export/champion", "benchmark/smoke",
                 "pipeline/demo", "privacy-audit/nightly"):
        assert name in done.stdout, done.stdout
    done = run([str(BIN / "prefect"), "deployment", "inspect", "privacy-audit/nightly", "--output", "json"],
               stack["env"])
    assert done.returncode == 0, done.stderr
    deployment = json.loads(done.stdout)
    schedules = [s["schedule"] for s in deployment["schedules"]]
    assert {"cron": "0 2 * * *", "timezone": "UTC"}.items() <= schedules[0].items(), schedules
    assert deployment["work_pool_name"] == "mnist-etc"
    assert deployment["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]["directory"] == str(REPO)
    # The audit policy is one typed parameter: the Prefect UI renders its schema as a form, bounds included.
    schema = deployment["parameter_openapi_schema"]
    assert schema["properties"]["policy"]["$ref"].endswith("/AuditConfig")
    policy = schema["definitions"]["AuditConfig"]["properties"]
    assert policy["membership_auc_bound"] == {**policy["membership_auc_bound"], "minimum": 0.5, "maximum": 1.0}
    assert schema["definitions"]["CanaryAuditConfig"]["properties"]["canaries"]["minimum"] == 2


def test_a_bad_policy_is_refused_before_any_flow_run(stack):
    def audit_runs() -> int:
        listed = run([str(BIN / "prefect"), "flow-run", "ls", "--limit", "100"], stack["env"])
        assert listed.returncode == 0, listed.stderr
        return listed.stdout.count("privacy-audit")

    before = audit_runs()
    done = run([str(BIN / "prefect"), "deployment", "run", "privacy-audit/nightly",
                "--params", json.dumps({"policy": {"leakage_bound": 5}})], stack["env"])
    assert done.returncode != 0 and "leakage_bound" in done.stdout + done.stderr, done.stdout + done.stderr
    assert audit_runs() == before


def test_nightly_audit_runs_through_the_worker(nightly_audit):
    done = nightly_audit["done"]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Completed" in done.stdout
    assert nightly_audit["report"], "the audit wrote no report"
    rec = json.loads(nightly_audit["report"].read_text())
    assert rec["verdict"]["passed"] and rec["lineage"] == "mnist-etc-audit"
    # The gates decided on the safe side of their intervals: epsilon, leakage and the membership AUC pass; the
    # canary audit (200 canaries, too few to vouch for the accounting) and the reconstruction bound may be
    # INCONCLUSIVE, which this policy counts as passed (inconclusive: pass). A DP champion gets every gate.
    from mnist_etc.audit.gates import GATES, audit_verdict

    verdicts = {t["name"]: t["verdict"] for t in rec["verdict"]["tests"]}
    assert [verdicts[g] for g in ("epsilon", "excess_leakage", "membership")] == ["PASS"] * 3, verdicts
    assert verdicts["canary_audit"] in ("PASS", "INCONCLUSIVE") and "FAIL" not in verdicts.values()
    assert rec["verdict"]["verdict"] == audit_verdict(list(verdicts.values()))
    assert rec["verdict"]["inconclusive_policy"] == "pass"
    applied = len(rec["verdict"]["tests"]) + len(rec["verdict"]["not_applicable"])
    assert applied == len(GATES)
    # 50 members + 50 non-members x 32 candidates x 2 iterations, plus one query per public digit
    assert rec["served_attack"]["queries"] >= 100 * 32 * 2
    # the one-run canary audit ran in the flow and was judged
    assert rec["canary_audit"]["canaries"] == 200 and rec["canary_audit"]["consistent"]
    assert 0 <= rec["membership"]["p_value"] <= 1 and "tpr_at_1pct_fpr" in rec["membership"]
    assert "127.0.0.1" in rec["served"]["url"]


def test_failing_audit_ends_the_flow_run_failed(stack, champion):
    done = run([str(BIN / "prefect"), "deployment", "run", "privacy-audit/nightly", "--watch",
                # the smallest audit the policy allows: a bound of -1 fails whatever the figures are
                "--params", audit_params(champion, allow_non_private=True, leakage_bound=-1.0, membership_samples=10,
                                         attack={"victims": 50, "n_iter": 1, "n_samples": 8, "n_best": 4})],
               stack["env"],
               timeout=900)
    assert done.returncode != 0
    assert "Failed" in done.stdout + done.stderr
    rec = json.loads(sorted((champion["root"] / "audits").glob("*/audit.json"))[-1].read_text())
    assert not rec["verdict"]["passed"] and rec["verdict"]["reasons"][0].startswith("excess_leakage FAIL:")
    assert "whole interval is above -1" in rec["verdict"]["reasons"][0]


def test_the_champion_carries_its_search_and_its_ledger_and_the_audit_appends(world, nightly_audit):
    """What is released is accounted (issue 26): the champion's epsilon_search beside its epsilon in winner.json and
    on its model version; privacy_ledger.json lists every trial, the selection and, after the nightly audit, the
    canary run; the audit publishes no training digit (its grid compared pixel by pixel with the training split)."""
    import math

    from mnist_etc.audit.ledger import model_ledger
    from mnist_etc.data import load_split
    from mnist_etc.dp.ledger import read_ledger
    from mnist_etc.images import to_uint8
    from mnist_etc.sweep.space import load_search_space
    from mlflow import MlflowClient
    from tests.audit.test_attack import grid_digits

    winner = world["winner"]
    # audit.yaml admits a non-private autoencoder (noise 0): the search is accounted, and infinite
    assert winner["search"]["method"] == "composition" and winner["epsilon_search"] in ("inf", math.inf)
    assert float(winner["epsilon_search"]) >= float(winner["epsilon"])
    local = read_ledger(world["root"] / "sweeps" / "audit" / "privacy_ledger.json")
    trainings = [e for e in local.entries if e.kind == "training"]
    assert len(trainings) == 2 and all(e.covered_by for e in trainings)
    assert [e.kind for e in local.entries].count("selection") == 1
    reg = winner["mlflow"]
    client = MlflowClient(f"sqlite:///{world['root'] / 'mlflow.db'}")
    tags = client.get_model_version(reg["registered_model"], str(reg["version"])).tags
    assert tags["epsilon_search"] == "inf" and tags["search_accounting"] == "composition"
    # after the nightly audit the champion's run holds the ledger with the audit's entries
    assert nightly_audit["done"].returncode == 0
    ledger = model_ledger(nightly_audit["champion"]["uri"], nightly_audit["champion"]["mlflow_uri"])
    kinds = [e.kind for e in ledger.entries]
    assert kinds.count("training") == 2 and "canary audit" in kinds and "statistic of members" in kinds
    canary = next(e for e in ledger.entries if e.kind == "canary audit")
    rec = json.loads(nightly_audit["report"].read_text())
    # per-example clipping: the canaries' scores depend on no training digit, so the run costs the data nothing
    assert rec["canary_audit"]["scores_depend_on_training_data"] is False and canary.epsilon == 0.0
    assert (nightly_audit["report"].parent / "privacy_ledger.json").is_file()
    # no training digit in the published grid, no aggregate of members but the gates' figures in audit.json
    space = load_search_space("search_spaces/audit.yaml")
    train = {to_uint8(x).tobytes() for x in load_split(space.data).x_train}
    shown = grid_digits(nightly_audit["report"].parent / "grid.png")
    assert shown and not set(shown) & train
    summary = rec["served_attack"]["summary"]
    assert "member_excess_cosine" not in summary and "member_gap" in summary
    assert not any("loss" in key for key in rec["membership"])
