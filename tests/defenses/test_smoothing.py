"""Randomized smoothing: the radius formula, abstention, seeded repeatability."""

from __future__ import annotations

from statistics import NormalDist

import pytest
import torch
import torch.nn as nn

from patchlab.defenses.smoothing import ABSTAIN, Smooth, lower_confidence_bound, radius


class Constant(nn.Module):
    """Always class 3 (of 10)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        out = torch.zeros(len(x), 10) + self.w
        out[:, 3] = 1.0
        return out


class CoinFlip(nn.Module):
    """Class 1 or 2 by the sign of the first pixel: under noise around 0, a fair coin."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        s = (x.flatten(1)[:, 0] > 0).float()
        out = torch.zeros(len(x), 10) + self.w
        out[:, 1], out[:, 2] = s, 1 - s
        return out


def test_radius_formula_against_hand_computed_values():
    # sigma * Phi^-1(p): by hand, Phi^-1(0.9) = 1.2816, so sigma 0.5 gives 0.6408; Phi^-1(0.5) = 0 gives nothing
    assert radius(0.9, 0.5) == pytest.approx(0.6408, abs=1e-4)
    assert radius(0.5, 1.0) == 0.0 and radius(0.3, 1.0) == 0.0
    # all n samples correct: the Clopper-Pearson lower bound is alpha^(1/n) in closed form
    n, alpha = 1000, 0.001
    p = lower_confidence_bound(n, n, alpha)
    assert p == pytest.approx(alpha ** (1 / n), rel=1e-9)
    assert p == pytest.approx(0.993116, abs=1e-6)
    assert radius(p, 0.25) == pytest.approx(0.25 * NormalDist().inv_cdf(alpha ** (1 / n)), rel=1e-9)
    assert radius(p, 0.25) == pytest.approx(0.6159, abs=1e-3)
    # an interior k: the bound is the p at which seeing >= k successes has probability alpha
    from scipy.stats import binom

    p = lower_confidence_bound(990, 1000, 0.001)
    assert binom.sf(989, 1000, p) == pytest.approx(0.001, rel=1e-6)
    assert lower_confidence_bound(0, 100, 0.001) == 0.0


def test_constant_model_certifies_with_the_closed_form_radius():
    smooth = Smooth(Constant(), sigma=0.5, num_classes=10)
    cls, r = smooth.certify(torch.zeros(1, 8, 8), n0=10, n=200, alpha=0.001, gen=torch.Generator().manual_seed(0))
    assert cls == 3
    assert r == pytest.approx(0.5 * NormalDist().inv_cdf(0.001 ** (1 / 200)), rel=1e-6)
    assert smooth.predict(torch.zeros(1, 8, 8), n=50, alpha=0.001, gen=torch.Generator()) == 3


def test_a_coin_flip_abstains():
    smooth = Smooth(CoinFlip(), sigma=0.5, num_classes=10)
    gen = torch.Generator().manual_seed(0)
    assert smooth.predict(torch.zeros(1, 8, 8), n=200, alpha=0.001, gen=gen) == ABSTAIN
    assert smooth.certify(torch.zeros(1, 8, 8), n0=20, n=200, alpha=0.001, gen=gen) == (ABSTAIN, 0.0)


def test_seeded_runs_repeat():
    smooth = Smooth(CoinFlip(), sigma=0.5, num_classes=10)
    a = smooth.counts(torch.zeros(1, 8, 8), 300, torch.Generator().manual_seed(7))
    b = smooth.counts(torch.zeros(1, 8, 8), 300, torch.Generator().manual_seed(7))
    c = smooth.counts(torch.zeros(1, 8, 8), 300, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c) and int(a.sum()) == 300
