"""Fixtures for the privacy tests: the small splits (scikit-learn's digits; no shared data needed)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def digits_split():
    """scikit-learn's 1797 digits: private 1000 / public 400 / test 397, 8x8."""
    from patchlab.privacy.data import privacy_data

    return privacy_data(None, seed=0)
