"""The Poisoning page in real headless Chromium: prepare the quick task, poison one training image, see the
target flip."""

from __future__ import annotations

import pytest

from .browser import fill, open_page, shoot, wait_idle

pytestmark = pytest.mark.e2e


def test_poisoning_page_flips_a_target(page, server):
    open_page(page, server, "poisoning", timeout=120_000)
    page.get_by_role("heading", name="Poisoning").wait_for()
    page.get_by_role("button", name="Prepare the task").click()
    page.get_by_text("training and", exact=False).first.wait_for(timeout=240_000)
    wait_idle(page)
    page.get_by_role("tab", name="Koh & Liang attack").click()
    fill(page, "Max steps", "30")
    page.get_by_role("button", name="Poison the training set").click()
    verdict = page.locator("[data-testid='stAlertContentSuccess']").filter(has_text="Flipped:")
    verdict.wait_for(timeout=240_000)
    page.get_by_role("button", name="Poison PNG").wait_for()
    page.locator("[data-testid='stImage']").nth(3).wait_for(timeout=30_000)  # the figures render after the button
    assert page.locator("[data-testid='stImage']").count() >= 4
    wait_idle(page)
    shoot(page, "poisoning", docs=True)
