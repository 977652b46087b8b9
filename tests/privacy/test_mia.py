"""Membership inference: ROC arithmetic on constructed scores, LiRA on synthetic Gaussians, the DP bound check,
and real small runs: an overfit model leaks (AUC clearly above 0.5), a DP model stays under its bound."""

from __future__ import annotations

import numpy as np
import pytest

from patchlab.privacy.mia import MIAConfig, auc, bound_check, lira_scores, membership, roc, run_mia, tpr_at
from patchlab.privacy.rdp import dp_auc_bound


def test_roc_on_constructed_scores():
    fpr, tpr, _ = roc(np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 1, 0, 0], bool))
    assert auc(fpr, tpr) == 1.0 and tpr_at(fpr, tpr, 0.0) == 1.0
    fpr, tpr, _ = roc(np.zeros(10), np.arange(10) % 2 == 0)  # no information: one threshold, the diagonal
    assert fpr.tolist() == [0, 1] and tpr.tolist() == [0, 1] and auc(fpr, tpr) == 0.5
    fpr, tpr, _ = roc(np.array([4, 3, 2, 1.0]), np.array([1, 0, 1, 0], bool))
    assert tpr.tolist() == [0, 0.5, 0.5, 1, 1] and fpr.tolist() == [0, 0, 0.5, 0.5, 1] and auc(fpr, tpr) == 0.75


def test_lira_separates_synthetic_gaussians():
    rng = np.random.default_rng(0)
    shadows, n = 16, 2000
    base = rng.normal(0, 2, size=n)  # per-example difficulty
    keep = membership(shadows + 1, n, seed=0)
    phi = base + 1.0 * keep + rng.normal(0, 0.5, size=(shadows + 1, n))  # members: +1 logit on average
    target, shadow = phi[0][None], phi[1:, None, :]
    for online in (True, False):
        for fixed in (True, False):
            s = lira_scores(target, shadow, keep[1:], online, fixed)
            assert auc(*roc(s, keep[0])[:2]) > 0.8
    # the global loss threshold cannot use the per-example difficulty: much weaker
    assert auc(*roc(target[0], keep[0])[:2]) < 0.7


def test_bound_check_flags_points_above_the_dp_bound():
    n = 5000
    members = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    leak = np.r_[np.full(n // 2, 10.0), np.zeros(n // 2), np.zeros(n)]  # half the members perfectly exposed
    fpr, tpr, _ = roc(leak, members)
    assert bound_check(fpr, tpr, n, n, 0.5, 1e-5)  # TPR 0.5 at FPR 0 is impossible at eps 0.5
    rng = np.random.default_rng(1)
    fpr, tpr, _ = roc(rng.normal(size=2 * n), members)  # chance
    assert bound_check(fpr, tpr, n, n, 0.1, 1e-5) == []


COMMON = dict(shadows=4, pool=400, model="mlp", workers=1, batch_size=64)


@pytest.fixture(scope="module")
def overfit(digits_split):
    return run_mia(digits_split.private, MIAConfig(trainer="fit", epochs=60, lr=3e-3, **COMMON),
                   test=digits_split.test)


def test_lira_exposes_an_overfit_model(overfit):
    assert overfit.train_accuracy == 1.0 and overfit.test_accuracy < 0.97
    assert overfit.n == 5 * 400 and overfit.epsilon is None
    lira = overfit.attacks["lira_online_fixed"]
    assert lira["auc"] >= 0.6  # measured 0.64-0.66 on these settings; chance is 0.5 (n = 2000 guesses)
    assert lira["tpr_at_1%"] > 0.01  # above chance at low FPR too
    assert overfit.yeom["advantage"] > 0
    s = overfit.summary()
    assert s["attacks"]["loss"]["curve"][0] == {"fpr": 0.0, "tpr": 0.0}


def test_seeded_mia_repeats(overfit, digits_split, tmp_path):
    again = run_mia(digits_split.private, MIAConfig(trainer="fit", epochs=60, lr=3e-3, **COMMON),
                    test=digits_split.test)
    for name, a in overfit.attacks.items():
        assert again.attacks[name]["auc"] == a["auc"], name


def test_dp_model_stays_under_its_bound(digits_split):
    # each DP-SGD model sees ~500 examples: logistic regression, eps = 2, 10 epochs (~80% test accuracy)
    res = run_mia(digits_split.private, MIAConfig(trainer="dpsgd", epochs=10, lr=2.0, target_epsilon=2.0,
                                                  **{**COMMON, "model": "logreg", "pool": 1000, "batch_size": 100}),
                  test=digits_split.test)
    assert res.epsilon == pytest.approx(2.0, abs=0.02)
    bound = dp_auc_bound(res.epsilon, 1e-5)
    for name, a in res.attacks.items():
        assert a["auc"] <= bound, name
        assert res.bound_violations[name] == [], name
    assert res.test_accuracy > 0.6  # the DP models learn (chance is 0.1)
