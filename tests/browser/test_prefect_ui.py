"""The Prefect UI of the session's stack (what `make stack-up` starts) in a browser: the deployments, the
nightly audit's schedule, and the sweep's flow run with its artifacts."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from playwright.sync_api import expect

pytestmark = pytest.mark.slow

# Every deployment of prefect.yaml, as (flow, deployment).
DEPLOYMENTS = [("sweep", "default"), ("sweep", "scaled"), ("trial", "default"), ("export", "champion"),
               ("benchmark", "smoke"), ("pipeline", "demo"), ("privacy-audit", "nightly")]


def test_prefect_ui_shows_deployments_the_nightly_schedule_and_the_sweep_artifacts(world, page, screenshot):
    ui = world["ui_url"]

    # The deployments, each with its flow: all of prefect.yaml's.
    deployed = yaml.safe_load((Path(__file__).resolve().parents[2] / "prefect.yaml").read_text())["deployments"]
    assert sorted(n for _, n in DEPLOYMENTS) == sorted(d["name"] for d in deployed)
    page.goto(f"{ui}/deployments")
    expect(page.get_by_text(f"{len(DEPLOYMENTS)} Deployments")).to_be_visible(timeout=30_000)
    for flow_name, name in DEPLOYMENTS:
        row = page.locator("tr").filter(has=page.get_by_role("link", name=name, exact=True))
        expect(row.get_by_text(flow_name, exact=True)).to_be_visible()

    # privacy-audit/nightly: its cron schedule, in words on the page and as `0 2 * * *` in the schedule form.
    page.get_by_role("link", name="nightly", exact=True).click()
    expect(page.get_by_text("At 02:00 AM every day", exact=True)).to_be_visible(timeout=30_000)
    page.locator(".deployment-schedule__menu button").click()
    page.get_by_text("Edit", exact=True).click()
    form = page.get_by_role("dialog")
    expect(form.get_by_text("Edit schedule")).to_be_visible()
    expect(form.locator("input").filter(has_not=page.locator("[type=checkbox]"))).not_to_have_count(0)
    values = form.locator("input").evaluate_all("els => els.map(e => e.value)")
    assert "0 2 * * *" in values, values
    expect(form.get_by_text("UTC", exact=True)).to_be_visible()
    form.get_by_role("button", name="Close").click()   # not saved: the schedule stays as deployed

    # The sweep's flow run: Completed, and its artifacts, the markdown report (the Pareto image inlined) and the
    # table of trials (besides its progress, sweep-audit-progress).
    page.goto(f"{ui}/runs/flow-run/{world['flow_run_id']}")
    expect(page.get_by_text("Completed").first).to_be_visible(timeout=30_000)
    page.locator("li.p-tab", has_text="Artifacts").click()
    markdown = page.locator("a[href*='/artifacts/artifact/']").filter(has_text="sweep-audit").filter(
        has_not_text="trials").filter(has_not_text="progress")
    table = page.locator("a[href*='/artifacts/artifact/']").filter(has_text="sweep-audit-trials")
    expect(markdown.first).to_be_visible(timeout=30_000)
    expect(table.first).to_be_visible()
    table_url, markdown_url = table.first.get_attribute("href"), markdown.first.get_attribute("href")

    page.goto(f"{ui}{table_url}")
    grid = page.locator("table")
    expect(grid.first).to_be_visible(timeout=30_000)
    for column in ("number", "state", "val_accuracy", "excess_cosine", "epsilon"):
        expect(grid.first.get_by_role("columnheader", name=column, exact=True)).to_be_visible()
    expect(page.get_by_text("2 Items")).to_be_visible()
    expect(grid.first.get_by_text("COMPLETE", exact=True)).to_have_count(2)

    page.goto(f"{ui}{markdown_url}")
    image = page.locator("img[src^='data:image/png;base64,']")
    expect(image).to_have_count(1, timeout=30_000)
    expect(image).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle(), timeout=15_000)
    expect(page.get_by_text("Registered in MLflow as mnist-etc-audit")).to_be_visible()
    screenshot(page, "prefect-ui")
