"""`mnist-etc ui` (the MLflow UI) in a browser, on the session's sweep: runs, metrics, the registered champion."""
from __future__ import annotations

import re
import urllib.request

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import BIN, http_json

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mlflow_ui(world, serve_for_module) -> str:
    """One `mnist-etc ui` on the world's store for the module: it reads the store live, so the nightly audit
    logged after it started shows too."""
    return serve_for_module([BIN / "mnist-etc", "ui", "--artifacts", world["root"]], "/health")


def test_mlflow_ui_shows_the_sweep_runs_and_the_champion_with_its_signature(world, mlflow_ui, page, screenshot):
    base = mlflow_ui
    model = world["winner"]["mlflow"]["registered_model"]
    assert model == "mnist-etc-audit"
    exp_id = http_json(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=mnist-etc-sweeps"
                       )["experiment"]["experiment_id"]

    # The champion's model version: alias `champion` and the ONNX signature (input and logits tensors).
    page.goto(f"{base}/#/models/{model}/versions/{world['winner']['mlflow']['version']}")
    expect(page.get_by_text(re.compile(r"^@?\s*champion$")).first).to_be_visible(timeout=30_000)
    schema = page.get_by_text("Schema", exact=True).first
    expect(schema).to_be_visible()
    page.get_by_text("Inputs (1)").click()
    page.get_by_text("Outputs (1)").click()
    expect(page.get_by_text("Tensor (dtype: float32, shape: [-1,28,28,1])")).to_be_visible()
    expect(page.get_by_text("Tensor (dtype: float32, shape: [-1,10])")).to_be_visible()
    expect(page.get_by_text("logits", exact=False).first).to_be_visible()

    # The experiment's runs (the "Model training" view; MLflow 3 opens experiments in its GenAI view by
    # default): the sweep's parent run, its two trial runs nested under it, and their objectives as columns.
    page.goto(f"{base}/#/experiments/{exp_id}/runs?workflowType=machine_learning")
    parent = page.get_by_text("sweep-audit", exact=True).first
    expect(parent).to_be_visible(timeout=30_000)
    assistant = page.get_by_role("button", name="Close")   # the MLflow Assistant side panel hides the table
    if assistant.count():
        assistant.first.click()
    page.get_by_role("button", name="Columns").click()
    columns = page.get_by_role("dialog").first
    for name in ("val_accuracy", "excess_cosine", "Dataset", "Source", "Models"):   # metrics on, empty columns off
        columns.get_by_text(name, exact=True).click()
    page.keyboard.press("Escape")
    page.locator("[row-index='0'] [col-id='attributes.`Run Name`'] button").first.click()   # expand the parent
    for trial in ("trial-0", "trial-1"):
        expect(page.get_by_text(trial, exact=True).first).to_be_visible(timeout=15_000)
    rows = page.locator(".ag-center-cols-container [role=row]")
    expect(rows).to_have_count(3)
    names = page.locator(".ag-pinned-left-cols-container [role=row]").all_inner_texts()
    assert [n for n in ("sweep-audit", "trial-1", "trial-0") if any(n in r for r in names)] == \
        ["sweep-audit", "trial-1", "trial-0"], names
    header = page.locator("[role=columnheader]").all_inner_texts()
    assert "val_accuracy" in header and "excess_cosine" in header, header
    runs = http_json(f"{base}/api/2.0/mlflow/runs/search", {"experiment_ids": [exp_id],
                                                             "filter": "tags.`mnist_etc.kind` = 'trial'"})["runs"]
    assert len(runs) == 2, runs
    cells = rows.all_inner_texts()
    for run in runs:   # each trial's objectives, as logged, in the table
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        for key in ("val_accuracy", "excess_cosine"):
            assert any(repr(metrics[key]) in c for c in cells), (key, metrics[key], cells)
    screenshot(page, "mlflow-ui")


def test_mlflow_ui_shows_an_audit_runs_report_and_images(world, nightly_audit, mlflow_ui, page, screenshot):
    """The nightly audit (run once per session through the stack's worker) logs its run into the world's store:
    its verdict as a tag and metrics, and its plots as artifacts that the run page previews as images."""
    assert nightly_audit["done"].returncode == 0, nightly_audit["done"].stdout[-3000:]
    assert nightly_audit["champion"]["root"] == world["root"]   # the store the module's UI shows
    base = mlflow_ui
    exp_id = http_json(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=privacy-audit"
                       )["experiment"]["experiment_id"]
    runs = http_json(f"{base}/api/2.0/mlflow/runs/search", {"experiment_ids": [exp_id],
                                                             "filter": "tags.passed = 'True'"})["runs"]
    assert len(runs) == 1, runs
    run_id = runs[0]["info"]["run_id"]
    metrics = {m["key"]: m["value"] for m in runs[0]["data"]["metrics"]}
    assert metrics["audit_passed"] == 1.0 and 0 <= metrics["membership_auc"] <= 1, metrics

    listed = http_json(f"{base}/api/2.0/mlflow/artifacts/list?run_id={run_id}")["files"]
    assert {"audit.json", "report.md", "grid.png", "roc.png"} <= {f["path"] for f in listed}, listed
    page.goto(f"{base}/#/experiments/{exp_id}/runs/{run_id}/artifacts")
    for name in ("grid.png", "roc.png"):   # what a user does: click the file in the run's artifact tree
        with page.expect_response(lambda r: "get-artifact" in r.url and name in r.url, timeout=60_000) as answered:
            page.get_by_text(name, exact=True).first.click(timeout=60_000)
        response = answered.value
        assert response.status == 200, (name, response.status)
        with urllib.request.urlopen(response.url, timeout=10) as r:   # the same URL the page asked for
            assert r.read()[:8] == b"\x89PNG\r\n\x1a\n", name
        # the UI shows the fetched file from a blob: URL; decoded by the browser, not a broken-image icon
        image = page.locator("img[src^='blob:']:visible").first
        expect(image).to_be_visible(timeout=30_000)
        page.wait_for_function("img => img.complete && img.naturalWidth > 100", arg=image.element_handle())
    assistant = page.get_by_role("button", name="Close")   # the MLflow Assistant side panel
    if assistant.count():
        assistant.first.click()
    screenshot(page, "mlflow-ui-audit")
