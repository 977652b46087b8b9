"""The Privacy page in real headless Chromium: a DP-SGD run on scikit-learn's digits shows the ε it spent."""

from __future__ import annotations

import pytest

from .browser import choose, fill, open_page, shoot, wait_idle

pytestmark = pytest.mark.e2e


def test_privacy_page_trains_with_dpsgd(page, server):
    open_page(page, server, "privacy", timeout=120_000)
    page.get_by_role("heading", name="Privacy").wait_for()
    choose(page, "Data", "scikit-learn digits (8x8, fastest)")
    choose(page, "Model", "mlp")
    fill(page, "Epochs", "2")
    page.get_by_role("button", name="Train with DP-SGD").click()
    metric = page.locator("[data-testid='stMetric']").filter(has_text="ε spent (RDP)")
    metric.wait_for(timeout=240_000)
    eps = float(metric.locator("[data-testid='stMetricValue']").inner_text())
    assert 1.9 <= eps <= 2.0  # the default target ε = 2 is spent, not exceeded
    assert page.locator("[data-testid='stMetric']").filter(has_text="Test accuracy").count() == 1
    wait_idle(page)
    shoot(page, "privacy", docs=True)
