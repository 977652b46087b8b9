"""The Defenses page in real headless Chromium: PatchCleanser on a built-in photo gives a verdict with its masks
drawn, the input-transformation tab shows the photo before and after, the measured tables render."""

from __future__ import annotations

import pytest

from .browser import choose, open_page, shoot, wait_idle

pytestmark = pytest.mark.e2e


def test_defenses_page_certifies_and_transforms(page, server):
    open_page(page, server, "defenses", timeout=120_000)
    page.get_by_role("heading", name="Defenses").wait_for()
    page.get_by_role("button", name="Run PatchCleanser").click()
    verdict = page.locator("[data-testid='stAlertContentSuccess'], [data-testid='stAlertContentWarning']")
    verdict.first.wait_for(timeout=180_000)
    text = verdict.first.inner_text()
    assert "Certified:" in text or "Defended prediction" in text, text  # (the alert's text starts with its icon)
    page.get_by_text("Masked passes").wait_for()
    page.get_by_text("masks of").first.wait_for()  # the mask grid's caption
    wait_idle(page)
    shoot(page, "defenses_patchcleanser")

    page.get_by_role("tab", name="Input transformations").click()
    choose(page, "Defense", "Median filter")
    page.get_by_text("After median filter").wait_for(timeout=120_000)
    assert page.locator("[data-testid='stImage']").count() >= 2
    page.get_by_role("tab", name="Measured results").click()
    page.get_by_text("The shipped toaster patch").first.wait_for(timeout=30_000)
    wait_idle(page)
    shoot(page, "defenses_results")
