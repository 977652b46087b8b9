"""Koh & Liang's attack on the small dog-vs-fish task: one poisoned training image flips a target after
retraining (checked again from the saved PNG, from scratch), stays inside its box on the 8-bit grid, and a seeded
rerun repeats it exactly; a run over targets resumes from its log."""

from __future__ import annotations

import pytest
import torch

from patchlab.errors import PatchlabError
from patchlab.poisoning import head as H
from patchlab.poisoning import koh_liang as K

CFG = K.KohLiangConfig(num_poisons=1, eps=2 / 255, step=0.5 / 255, max_iters=30)


@pytest.fixture(scope="module")
def target(small_task, small_clean):
    return K.choose_targets(small_task, small_clean, 1)[0]


@pytest.fixture(scope="module")
def outcome(small_task, small_clean, lite0, target):
    return K.attack_target(small_task, lite0, small_clean, target, CFG)


def _retrain_from_scratch(task, features_of_poisons: dict[int, torch.Tensor]):
    feats = task.train_features.clone()
    for i, f in features_of_poisons.items():
        feats[i] = f
    prob = H.Problem.from_features(feats, task.train_labels, 2, l2=CFG.l2)
    return H.fit(prob).theta


def test_one_poison_flips_the_target_after_retraining_and_not_before(small_task, small_clean, lite0, outcome,
                                                                      target, tmp_path):
    from patchlab.data import read_image, save_image
    from patchlab.poisoning.features import penultimate

    r = outcome.result
    y = small_task.test[target].label
    assert r.attacked and int(small_clean.test_pred[target]) == y and r.before_true_prob > 0.5
    assert r.flipped and r.after_true_prob < 0.5 and r.after_pred != r.true_label and r.iterations >= 1
    assert len(r.poisons) == 1 and small_task.train[r.poisons[0]].label != y  # an image of the other class
    # independent check: the poison as saved on disk, its features, a head fitted from zero
    path = save_image(outcome.poisons[0], tmp_path / "poison.png")
    reread = read_image(path)
    assert torch.equal(reread, outcome.poisons[0])
    with torch.no_grad():
        f_poison = penultimate(lite0, reread.unsqueeze(0))[0]
        f_orig = penultimate(lite0, outcome.originals[0].unsqueeze(0))[0]
    x_t = small_task.test_features[target].reshape(1, -1)
    poisoned = _retrain_from_scratch(small_task, {r.poisons[0]: f_poison})
    before = _retrain_from_scratch(small_task, {r.poisons[0]: f_orig})
    assert int(H.probabilities(poisoned, x_t).argmax()) != y
    assert int(H.probabilities(before, x_t).argmax()) == y
    # the defense view ranks the poison among every training point
    row = r.defense[0]
    assert row["poison"] == r.poisons[0] and row["n"] == len(small_task.train)
    assert 1 <= row["rank_influence"] <= row["n"] and set(row) >= {"rank_loss", "rank_knn", "rank_spectral"}


def test_poison_is_a_valid_image_inside_its_box(outcome):
    orig, poison = outcome.originals[0], outcome.poisons[0]
    assert poison.shape == orig.shape and poison.min() >= 0 and poison.max() <= 1
    assert torch.equal(poison * 255, (poison * 255).round())  # exactly an 8-bit image
    assert float((poison - orig).abs().max()) <= CFG.eps + 1e-6
    assert outcome.result.poison_linf[0] <= CFG.eps + 1e-6
    assert int(((poison - orig).abs() > 0).sum()) > 1000  # really perturbed


def test_seeded_runs_repeat(small_task, small_clean, lite0, outcome, target):
    again = K.attack_target(small_task, lite0, small_clean, target, CFG)
    assert torch.equal(again.poisons, outcome.poisons)
    a, b = again.result.to_dict(), outcome.result.to_dict()
    a.pop("seconds"), b.pop("seconds")
    assert a == b


def test_run_over_targets_resumes_from_its_log(small_task, small_clean, lite0, monkeypatch, tmp_path):
    cfg = K.KohLiangConfig(num_poisons=1, max_iters=3)
    targets = K.choose_targets(small_task, small_clean, 2)
    log = tmp_path / "log.jsonl"
    first = K.run_targets(small_task, lite0, cfg, targets[:1], log=log, clean=small_clean)
    full = K.run_targets(small_task, lite0, cfg, targets, log=log, clean=small_clean)
    assert [r.target for r in full] == targets and full[0].to_dict() == first[0].to_dict()
    log.write_text(log.read_text() + '{"key": {"partial')  # a run killed mid-line

    def boom(*a, **k):
        raise AssertionError("a finished target was attacked again")

    monkeypatch.setattr(K, "attack_target", boom)
    resumed = K.run_targets(small_task, lite0, cfg, targets, log=log, clean=small_clean)
    assert [r.to_dict() for r in resumed] == [r.to_dict() for r in full]
    s = K.summarize(resumed)
    assert s["n"] == 2 and 0 <= s["flip_rate"] <= 1 and len(s["ci95"]) == 2


def test_bad_settings_are_one_line_errors():
    with pytest.raises(PatchlabError, match="eps"):
        K.KohLiangConfig(eps=0.5 / 255).check()
    with pytest.raises(PatchlabError, match="num_poisons"):
        K.KohLiangConfig(num_poisons=0).check()
    with pytest.raises(PatchlabError, match="candidates"):
        K.KohLiangConfig(candidates="nearest").check()
