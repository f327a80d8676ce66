"""`mnist-etc dashboard` (optuna-dashboard under gunicorn) in a browser, on the session's sweep."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import BIN, http_json

pytestmark = pytest.mark.slow


def test_dashboard_shows_named_objectives_the_pareto_front_and_trial_images(world, serve, page, screenshot):
    base = serve([BIN / "mnist-etc", "dashboard", "--artifacts", world["root"]], "/api/meta")
    study_id = next(s["study_id"] for s in http_json(f"{base}/api/studies")["study_summaries"]
                    if s["study_name"] == world["study"])
    artifacts = []
    page.on("response", lambda r: artifacts.append(r) if "/artifacts/" in r.url else None)

    # The trial list: both trials; the selected trial's images (its Optuna artifacts) load and show.
    page.goto(f"{base}/dashboard/studies/{study_id}/trials")
    for n in range(2):
        expect(page.get_by_text(f"Trial {n}", exact=True).first).to_be_visible(timeout=30_000)
    images = page.locator("img[src*='/artifacts/']")
    expect(images).to_have_count(2, timeout=30_000)
    assert sorted(images.evaluate_all("els => els.map(e => e.alt)")) == ["attack_grid.png", "autoencoder_grid.png"]
    for i in range(2):
        image = images.nth(i)
        image.scroll_into_view_if_needed()
        expect(image).to_be_visible()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle(),
                               timeout=15_000)
    served = [(r.status, len(r.body())) for r in artifacts if r.request.resource_type == "image"]
    assert len(served) >= 2 and all(status == 200 and size > 0 for status, size in served), served

    # The study page: the objectives by metric name, and the Pareto front drawn by plotly (svg, one point a trial).
    page.goto(f"{base}/dashboard/studies/{study_id}")
    pareto = page.locator(".MuiCard-root").filter(has=page.get_by_text("Pareto Front", exact=True))
    expect(pareto.locator(".js-plotly-plot svg.main-svg").first).to_be_visible(timeout=30_000)
    expect(pareto.locator(".scatterlayer .point")).to_have_count(2)
    expect(pareto.get_by_text("val_accuracy").first).to_be_visible()
    expect(pareto.get_by_text("excess_cosine").first).to_be_visible()
    expect(page.get_by_text("Objective 0")).to_have_count(0)
    expect(page.get_by_text("Objective 1")).to_have_count(0)
    screenshot(page, "optuna-dashboard")
