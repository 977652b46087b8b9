"""The Transfer & theft page in real headless Chromium: run the substitute attack and see its figure."""

from __future__ import annotations

import pytest

from .browser import SHOTS, fill, open_page, shoot, wait_idle

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", autouse=True)
def _cache_in_artifacts():
    """Runs before this module's server starts: the page caches its trained models under test-artifacts/."""
    mp = pytest.MonkeyPatch()
    mp.setenv("PATCHLAB_CACHE", str(SHOTS / "transfer-cache"))
    yield
    mp.undo()


def test_transfer_page_runs_the_substitute_attack(page, server):
    open_page(page, server, "transfer", timeout=120_000)
    page.get_by_role("heading", name="Transfer & theft").wait_for()
    page.get_by_role("tab", name="Substitute attack").click()
    wait_idle(page)
    fill(page, "Seed images", "20")
    fill(page, "Augmentation rounds ρ", "1")
    page.get_by_text("20 × 2^1 = 40 labels").wait_for()
    page.get_by_role("button", name="Run the substitute attack").click()
    metric = page.locator("[data-testid='stMetric']").filter(has_text="Victim misclassifies")
    metric.wait_for(timeout=300_000)  # trains the victim and the substitute on two busy cores
    assert "points vs same-norm noise" in metric.inner_text()
    assert page.locator("[data-testid='stImage']").count() >= 1
    wait_idle(page)
    shoot(page, "transfer_theft", docs=True)
