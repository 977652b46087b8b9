"""Poison Frogs on the small dog-vs-fish task: one clean-label poison makes the retrained head call its target
the base class (checked again from scratch), and the poison is a real 8-bit image."""

from __future__ import annotations

import pytest
import torch

from patchlab.errors import PatchlabError
from patchlab.poisoning import feature_collision as FC
from patchlab.poisoning import head as H


def test_paper_beta_for_lite0():
    cfg = FC.FeatureCollisionConfig(beta0=0.25)
    # beta0 (D / dim_b)^2 in 0-255 units, times 255^2 for [0, 1] pixels
    assert FC.beta(cfg, 1280, (3, 224, 224)) == pytest.approx(0.25 * (1280 / 150528) ** 2 * 255 ** 2)


def test_one_clean_label_poison_makes_the_target_the_base_class(small_task, small_clean, lite0):
    from patchlab.poisoning.features import penultimate

    pairs = FC.choose_pairs(small_task, small_clean, 1)
    t, b = pairs[0]
    y_t, y_b = small_task.test[t].label, small_task.test[b].label
    assert y_t != y_b and int(small_clean.test_pred[t]) == y_t  # correctly classified before
    kept = []
    results = FC.run_pairs(small_task, lite0, FC.FeatureCollisionConfig(max_iters=60, batch=1), pairs,
                           on_outcome=kept.append, clean=small_clean)
    r, po = results[0], kept[0]
    assert r.success and r.after_pred == small_task.class_names[y_b] and r.target_base_prob_after > 0.5
    assert r.feature_distance < r.start_distance / 2
    poison = po.poison
    assert poison.min() >= 0 and poison.max() <= 1 and torch.equal(poison * 255, (poison * 255).round())
    # from scratch: the clean training set plus the poison with its (correct) base label
    with torch.no_grad():
        f_p = penultimate(lite0, poison.unsqueeze(0))
    feats = torch.cat([small_task.train_features, f_p])
    labels = torch.cat([small_task.train_labels, torch.tensor([y_b])])
    theta = H.fit(H.Problem.from_features(feats, labels, 2, l2=1e-3)).theta
    assert int(H.probabilities(theta, small_task.test_features[t].reshape(1, -1)).argmax()) == y_b
    assert r.defense[0]["poison"] == len(small_task.train)  # the added row
    s = FC.summarize(results)
    assert s["n"] == 1 and s["success_rate"] == 1.0


def test_bad_settings_are_one_line_errors():
    with pytest.raises(PatchlabError, match="opacity"):
        FC.FeatureCollisionConfig(opacity=1.0).check()
    with pytest.raises(PatchlabError, match="opacity"):
        FC.FeatureCollisionConfig(opacity=-0.1).check()
