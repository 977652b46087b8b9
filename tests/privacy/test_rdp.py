"""Our RDP arithmetic against Opacus's and against worked values from the papers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from patchlab.errors import PatchlabError
from patchlab.privacy.rdp import (DEFAULT_ORDERS, dp_auc_bound, dp_roc_bound, dpsgd_epsilon, eps_from_rdp,
                                  gaussian_rdp, sampled_gaussian_rdp)


@pytest.mark.parametrize("q,sigma,steps", [(0.01, 4.0, 10_000), (0.004, 1.3, 3750), (240 / 6000, 1.1, 1500),
                                           (0.5, 0.7, 10), (1e-3, 0.8, 50_000)])
def test_sampled_gaussian_matches_opacus(q, sigma, steps):
    from opacus.accountants.analysis import rdp as opacus_rdp

    ours = sampled_gaussian_rdp(q, sigma, DEFAULT_ORDERS, steps)
    theirs = np.asarray(opacus_rdp.compute_rdp(q=q, noise_multiplier=sigma, steps=steps, orders=list(DEFAULT_ORDERS)))
    finite = np.isfinite(theirs)
    assert np.array_equal(finite, np.isfinite(ours))
    np.testing.assert_allclose(ours[finite], theirs[finite], rtol=1e-6)
    eps_theirs, _ = opacus_rdp.get_privacy_spent(orders=list(DEFAULT_ORDERS), rdp=theirs, delta=1e-5)
    assert dpsgd_epsilon(sigma, q, steps, 1e-5) == pytest.approx(float(eps_theirs), rel=1e-6)


def test_worked_values():
    # Abadi et al. 2016, Sec. 3.1: q = 0.01, sigma = 4, 10k steps, delta = 1e-5 -> eps ~ 1.26 with the moments
    # accountant (integer moments, the classic conversion)
    orders = np.arange(2, 65)
    eps, _ = eps_from_rdp(orders, sampled_gaussian_rdp(0.01, 4.0, orders, 10_000), 1e-5, "classic")
    assert eps == pytest.approx(1.26, abs=0.005)
    # the tighter conversion (Balle et al. 2020) can only lower it
    assert eps_from_rdp(orders, sampled_gaussian_rdp(0.01, 4.0, orders, 10_000), 1e-5)[0] < eps
    # q = 1 is the plain Gaussian mechanism; q = 0 costs nothing
    np.testing.assert_allclose(sampled_gaussian_rdp(1.0, 2.0, [2, 3.5, 10]), gaussian_rdp(2.0, [2, 3.5, 10]))
    assert np.all(sampled_gaussian_rdp(0.0, 1.0, [2, 5]) == 0)
    # a Gaussian mechanism with sigma = 1, alpha = 2: RDP 1; eps at delta = e^-1 (classic) = 1 + 1 = 2
    assert eps_from_rdp([2.0], gaussian_rdp(1.0, [2.0]), math.exp(-1), "classic")[0] == pytest.approx(2.0)


def test_dp_roc_bound():
    fpr = np.linspace(0, 1, 11)
    np.testing.assert_allclose(dp_roc_bound(fpr, 0.0, 0.0), fpr)  # eps = 0: no test beats chance
    b = dp_roc_bound(fpr, 1.0, 1e-5)
    assert b[0] == pytest.approx(1e-5) and b[-1] == 1.0 and np.all(np.diff(b) >= 0)
    assert np.all(b <= math.e * fpr + 1e-5 + 1e-12)
    assert dp_auc_bound(0.0, 0.0) == pytest.approx(0.5, abs=1e-6)
    assert 0.5 < dp_auc_bound(0.5, 1e-5) < dp_auc_bound(2.0, 1e-5) < dp_auc_bound(8.0, 1e-5) < 1


def test_bad_inputs():
    with pytest.raises(PatchlabError):
        sampled_gaussian_rdp(1.5, 1.0)
    with pytest.raises(PatchlabError):
        sampled_gaussian_rdp(0.1, 1.0, [1.0])
    with pytest.raises(PatchlabError):
        eps_from_rdp([2.0], [1.0], 0.0)
