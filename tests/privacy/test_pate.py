"""PATE: vote counting, the aggregators' noise on constructed votes, the data-dependent analysis against worked
values and against the data-independent bound, and a small real run (seeded, resumable, parallel)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from patchlab.errors import PatchlabError
from patchlab.privacy import pate_analysis as pa
from patchlab.privacy.pate import PATEConfig, aggregate, partition, run_pate, vote_counts
from patchlab.privacy.rdp import eps_from_rdp
from patchlab.stats import wilson_interval

Z = 3.29  # 99.9% two-sided: these checks run many draws, keep false alarms rare


def _inside(hits: int, n: int, p: float) -> bool:
    lo, hi = wilson_interval(hits, n, Z)
    return lo <= p <= hi


def test_vote_counts_and_partition():
    preds = torch.tensor([[0, 1, 2], [0, 1, 1], [3, 1, 1], [0, 2, 1]])  # 4 teachers x 3 queries
    counts = vote_counts(preds, 4)
    assert counts.tolist() == [[3, 0, 0, 1], [0, 3, 1, 0], [0, 3, 1, 0]]
    parts = partition(103, 10, seed=1)
    flat = sorted(i for p in parts for i in p)
    assert flat == list(range(103)) and {len(p) for p in parts} == {10, 11}
    assert parts == partition(103, 10, seed=1) and parts != partition(103, 10, seed=2)


def test_gnmax_noise_on_constructed_votes():
    # two classes, gap d: the runner-up wins exactly when N(0, 2 sigma^2) > d
    n, sigma, d = 20_000, 10.0, 12.0
    counts = np.tile([50.0, 50.0 - d], (n, 1))
    agg = aggregate(counts, "gnmax", np.random.default_rng(0), sigma=sigma)
    p = 0.5 * math.erfc(d / (2 * sigma))
    assert _inside(int((agg.labels == 1).sum()), n, p)
    assert math.exp(pa.logq_gnmax([50, 50 - d], sigma)) == pytest.approx(p, rel=1e-9)  # exact for two classes


def test_lnmax_noise_on_constructed_votes():
    # two classes: Pr[Lap(b) - Lap(b) > d] = (2 + d/b) / (4 e^(d/b)), the 2016 paper's Lemma 4 (exact here)
    n, gamma, d = 20_000, 0.1, 10.0
    agg = aggregate(np.tile([30.0, 30.0 - d], (n, 1)), "lnmax", np.random.default_rng(1), gamma=gamma)
    p = (2 + gamma * d) / (4 * math.exp(gamma * d))
    assert _inside(int((agg.labels == 1).sum()), n, p)
    assert math.exp(pa.logq_lnmax([30, 30 - d], gamma)) == pytest.approx(p, rel=1e-9)


def test_confident_gnmax_threshold_on_constructed_votes():
    n, t, s1 = 20_000, 40.0, 8.0
    counts = np.tile([35.0, 10.0, 5.0], (n, 1))
    agg = aggregate(counts, "confident", np.random.default_rng(2), sigma=1.0, threshold=t, sigma1=s1)
    p = 0.5 * math.erfc((t - 35) / (s1 * math.sqrt(2)))
    assert _inside(int(agg.answered.sum()), n, p)
    assert np.all(agg.labels[~agg.answered] == -1) and np.all(agg.labels[agg.answered] == 0)
    assert math.exp(pa.logpr_answered([35, 10, 5], t, s1)) == pytest.approx(p, rel=1e-9)


def test_data_independent_worked_values():
    # GNMax, sigma = 40, 100 queries, delta = 1e-5, classic conversion: min over alpha of 100 alpha / 1600 +
    # log(1e5) / (alpha - 1); on the 0.5 grid the optimum is alpha = 14.5: 0.90625 + 11.5129 / 13.5 = 1.75906
    rdp = 100 * pa.rdp_gnmax_independent(40.0)
    eps, order = eps_from_rdp(pa.PATE_ORDERS, rdp, 1e-5, "classic")
    assert order == 14.5 and eps == pytest.approx(0.90625 + math.log(1e5) / 13.5, abs=1e-9)
    # LNMax as in Papernot et al. 2016 (gamma = 0.05: each query 0.1-DP; 100 queries; moments l = 1..8):
    # alpha(l) = 2 gamma^2 l (l + 1) per query; the best l = 5 gives (15 + log 1e5) / 5 = 5.3026
    orders = np.arange(2, 10)
    eps, order = eps_from_rdp(orders, 100 * pa.rdp_lnmax_independent(0.05, orders), 1e-5, "classic")
    assert order == 6 and eps == pytest.approx((15 + math.log(1e5)) / 5, abs=1e-9)


def _theorem6_direct(q: float, sigma: float, alpha: float) -> float:
    """Thm 6 of Papernot et al. 2018 evaluated directly in 50-digit arithmetic (an independent check)."""
    import mpmath as mp

    mp.mp.dps = 50
    q, sigma, alpha = mp.mpf(q), mp.mpf(sigma), mp.mpf(alpha)
    mu2 = sigma * mp.sqrt(-mp.log(q))
    mu1 = mu2 + 1
    e1, e2 = mu1 / sigma ** 2, mu2 / sigma ** 2
    a = (1 - q) / (1 - (q * mp.e ** e2) ** ((mu2 - 1) / mu2))
    b = mp.e ** e1 / q ** (1 / (mu1 - 1))
    return float(mp.log((1 - q) * a ** (alpha - 1) + q * b ** (alpha - 1)) / (alpha - 1))


def test_data_dependent_worked_values():
    # 250 unanimous teachers, sigma = 40: q <= 9 Pr[N(0, 3200) > 250]
    counts = [250] + [0] * 9
    q = 9 * 0.5 * math.erfc(250 / (2 * 40))
    assert pa.logq_gnmax(counts, 40.0) == pytest.approx(math.log(q), rel=1e-12)
    for alpha in (2.0, 10.0, 50.0, 120.0):
        got = float(pa.rdp_gnmax_dependent(math.log(q), 40.0, [alpha])[0])
        assert got == pytest.approx(_theorem6_direct(q, 40.0, alpha), rel=1e-9)
        assert got <= alpha / 40 ** 2
        if alpha <= 50:
            assert got < 0.1 * alpha / 40 ** 2  # far below the data-independent alpha / sigma^2
    # beyond mu1 = sigma sqrt(log 1/q) + 1 ~ 127.6 the theorem does not apply: the independent bound is returned
    assert float(pa.rdp_gnmax_dependent(math.log(q), 40.0, [200.0])[0]) == pytest.approx(200 / 1600)


def test_data_dependent_below_independent_when_teachers_agree():
    rng = np.random.default_rng(0)
    for aggregator, kw in (("gnmax", {"sigma": 20.0}), ("lnmax", {"gamma": 0.05}),
                           ("confident", {"sigma": 20.0, "threshold": 150.0, "sigma1": 60.0})):
        # strong agreement: 230-250 of 250 teachers on one class
        top = rng.integers(230, 251, size=100)
        agree = np.zeros((100, 10))
        agree[:, 0] = top
        agree[:, 1] = 250 - top
        an = pa.analyse(agree, aggregator, 1e-5, **kw)
        assert np.all(an.rdp_dependent <= an.rdp_independent + 1e-12)
        assert an.epsilon(True) < 0.6 * an.epsilon(False), aggregator
        # random votes: never above the data-independent bound
        noisy = rng.multinomial(250, rng.dirichlet(np.ones(10)), size=100)
        an = pa.analyse(noisy, aggregator, 1e-5, **kw)
        assert np.all(an.rdp_dependent <= an.rdp_independent + 1e-12)
        assert an.epsilon(True) <= an.epsilon(False) + 1e-9
    # a tie gives no data-dependent saving
    tie = pa.rdp_gnmax_dependent(pa.logq_gnmax([125, 125, 0], 20.0), 20.0)
    np.testing.assert_allclose(tie, pa.rdp_gnmax_independent(20.0))


def test_confident_only_answered_queries_pay_for_gnmax():
    counts = np.array([[240, 10, 0], [120, 100, 30]], dtype=float)
    kw = dict(sigma=20.0, threshold=150.0, sigma1=50.0)
    both = pa.analyse(counts, "confident", 1e-5, answered=[True, True], **kw)
    first = pa.analyse(counts, "confident", 1e-5, answered=[True, False], **kw)
    step1 = pa.rdp_threshold_independent(50.0)
    np.testing.assert_allclose(first.rdp_independent[1], step1)
    np.testing.assert_allclose(both.rdp_independent[1], step1 + pa.rdp_gnmax_independent(20.0))
    with pytest.raises(PatchlabError):
        pa.analyse(counts, "confident", 1e-5, sigma=20.0)


def test_small_pate_run_repeats_and_resumes(digits_split, tmp_path):
    cfg = PATEConfig(teachers=8, aggregator="confident", sigma=2.0, threshold=5.0, sigma1=2.0, queries=200,
                     model="logreg", teacher_epochs=10, teacher_lr=0.05, teacher_batch_size=64, student_epochs=15,
                     student_lr=0.05, student_batch_size=64, pseudo_label=0.9, workers=1, seed=3)
    a = run_pate(digits_split, cfg, out_dir=tmp_path / "run")
    assert a.n["per_teacher"] == 125 and len(a.teacher_accuracy) == 8
    assert 0 < a.answered <= 200 and a.counts.sum(1).tolist() == [8] * 200 and a.pseudo_labelled > 0
    assert a.epsilon <= a.epsilon_independent and math.isfinite(a.epsilon)
    assert a.ensemble_accuracy >= 0.8 and a.student_accuracy >= 0.7
    summary = a.summary()
    assert summary["epsilon_curve"][-1]["epsilon"] == pytest.approx(a.epsilon)
    # the same seed repeats exactly, reusing the saved teachers
    b = run_pate(digits_split, cfg, out_dir=tmp_path / "run")
    assert np.array_equal(a.labels, b.labels) and a.epsilon == b.epsilon
    assert b.student_accuracy == a.student_accuracy
    with pytest.raises(PatchlabError, match="queries"):
        run_pate(digits_split, cfg, queries=10_000)


def test_teachers_in_parallel_processes_equal_in_process(digits_split):
    from patchlab.privacy.pate import train_teachers

    cfg = PATEConfig(teachers=4, model="logreg", teacher_epochs=3, teacher_lr=0.05, seed=1)
    one = train_teachers(digits_split, cfg.__class__(**{**cfg.to_dict(), "workers": 1}))
    two = train_teachers(digits_split, cfg.__class__(**{**cfg.to_dict(), "workers": 2}))
    for m1, m2 in zip(one, two):
        for (k, v1), v2 in zip(m1.state_dict().items(), m2.state_dict().values()):
            assert torch.equal(v1, v2), k


def test_scatter_linear_teachers_beat_networks_and_resume(digits_split, tmp_path):
    """Teachers on fixed ScatterNet features (logistic regression) against logistic regression on pixels trained
    the same way as the network teachers above; the ensemble is saved, reused, and its models take images."""
    from patchlab.models.digits import load_digits_model, predict_logits

    common = dict(teachers=10, aggregator="gnmax", sigma=2.0, queries=200, pseudo_label=0.9, workers=1, seed=0)
    pixels = run_pate(digits_split, PATEConfig(model="logreg", teacher_epochs=10, teacher_lr=0.05,
                                               teacher_batch_size=64, student_epochs=15, student_lr=0.05,
                                               student_batch_size=64, **common))
    out = tmp_path / "scatter"
    cfg = PATEConfig(teacher="scatter-linear", self_training=2, **common)
    a = run_pate(digits_split, cfg, out_dir=out)
    n = len(digits_split.test)
    # measured 0.921 (10 teachers of 100 examples, 397 test images); the floors leave a Wilson margin
    assert np.mean(a.teacher_accuracy) >= 0.88 and a.ensemble_accuracy >= 0.92
    assert np.mean(a.teacher_accuracy) > np.mean(pixels.teacher_accuracy) + 0.02
    lo = wilson_interval(round(a.student_accuracy * n), n)[0]
    assert a.student_accuracy >= 0.85 and lo > 0.8
    assert a.epsilon < pixels.epsilon  # more agreement, smaller data-dependent epsilon at the same sigma
    assert (out / "scatter.features.pt").is_file() and len(list((out / "teachers").glob("*.job.json"))) == 10
    # a saved teacher is a whole ScatterNet model: on images it votes as the ensemble did on features
    t0 = load_digits_model(out / "teachers" / "teacher-000.digits.safetensors")
    votes = predict_logits(t0, digits_split.public.images[:200]).argmax(1)
    assert a.counts[np.arange(200), votes.numpy()].min() >= 1
    b = run_pate(digits_split, cfg, out_dir=out)  # reuses the features and the teachers
    assert np.array_equal(a.labels, b.labels) and a.epsilon == b.epsilon
    assert b.student_accuracy == a.student_accuracy
    with pytest.raises(PatchlabError, match="did you mean 'scatter-linear'"):
        run_pate(digits_split, cfg, teacher="scatter-linea")


def test_public_pca_teachers_see_only_public_images(digits_split, tmp_path, monkeypatch):
    """features="public-pca": the PCA is fitted on the student's public pool alone (no labels, no private, test or
    held-out validation image), the teachers fold back into ScatterNet models that vote on images as on the
    coordinates, and the held-out images are never queried."""
    from dataclasses import replace

    from patchlab.data import Digits
    from patchlab.models.digits import predict_logits
    from patchlab.privacy import pate as pate_mod
    from patchlab.privacy.pate import fixed_features, public_pca, train_teachers

    cfg = PATEConfig(teacher="scatter-linear", features="public-pca", feature_dim=16, teachers=10,
                     aggregator="gnmax", sigma=2.0, queries=150, validation=100, pseudo_label=0.9, workers=1, seed=0)
    feats = fixed_features(digits_split)
    seen = []
    monkeypatch.setattr(pate_mod, "public_pca", lambda f, dim, size: seen.append(f) or public_pca(f, dim, size))
    a = run_pate(digits_split, cfg, out_dir=tmp_path / "pca")
    monkeypatch.undo()
    assert len(seen) == 1 and torch.equal(seen[0], feats["public"][:300])  # 400 public less 100 held out
    # changing what the PCA must not see (test images, held-out images, public labels) changes no teacher
    g = torch.Generator().manual_seed(5)
    noise = Digits(torch.rand(digits_split.test.images.shape, generator=g), digits_split.test.labels, "noise")
    pub = digits_split.public
    pub_imgs = pub.images.clone()
    pub_imgs[300:] = torch.rand(pub_imgs[300:].shape, generator=g)
    other = replace(digits_split, test=noise, public=Digits(pub_imgs, pub.labels.flip(0), pub.source))
    first = train_teachers(digits_split, cfg)
    again = train_teachers(other, cfg)
    for m1, m2 in zip(first, again):
        assert torch.equal(m1.trainable[2].weight, m2.trainable[2].weight)
    pca = public_pca(feats["public"][:300], 16, digits_split.size)
    assert pca.components.shape == (16, feats["public"][0].numel())
    # folded teachers are whole ScatterNet models: on images they vote as the ensemble did
    votes = torch.stack([predict_logits(m, digits_split.public.images[:150]).argmax(1) for m in first])
    assert np.array_equal(vote_counts(votes, 10), a.counts)
    n = len(digits_split.test)
    # measured: teachers 0.9x on 100 examples each; the floors leave a Wilson margin at n = 397 and 100
    assert np.mean(a.teacher_accuracy) >= 0.85 and a.ensemble_accuracy >= 0.9
    assert wilson_interval(round(a.student_accuracy * n), n)[1] >= 0.9
    assert a.validation_accuracy is not None and a.n["validation"] == 100 and a.n["public"] == 300
    with pytest.raises(PatchlabError, match="queries"):
        run_pate(digits_split, cfg, queries=301)  # the held-out images cannot be queried
    with pytest.raises(PatchlabError, match="needs teacher='scatter-linear'"):
        run_pate(digits_split, cfg, teacher="network")
    with pytest.raises(PatchlabError, match="did you mean 'public-pca'"):
        run_pate(digits_split, cfg, features="public-pcb")


def test_lbfgs_fit_reaches_the_regularised_optimum(digits_split):
    """fit(optimizer="lbfgs") (the linear teachers' and student's optimiser in the PATE recipe): full batch, its
    weight decay as the penalty wd/2 |w|^2; after 10 steps the penalised objective's gradient vanishes."""
    from patchlab.models.digits import fit, make_digits_model

    x, y = digits_split.private.images[:300], digits_split.private.labels[:300]

    def trained(wd: float):
        net = make_digits_model("logreg", size=8, seed=0)
        fit(net, x, y, epochs=10, lr=1.0, batch_size=len(x), weight_decay=wd, optimizer="lbfgs", seed=0)
        return net

    for wd in (0.01, 0.1):
        net = trained(wd)
        loss = torch.nn.functional.cross_entropy(net(x), y) + wd / 2 * sum((p * p).sum() for p in net.parameters())
        loss.backward()
        assert float(torch.cat([p.grad.flatten() for p in net.parameters()]).norm()) < 1e-4
    norms = [float(trained(wd).head.weight.detach().norm()) for wd in (0.01, 0.1)]
    assert norms[1] < 0.7 * norms[0]  # the penalty is applied


def test_curriculum_self_training_keeps_classes_balanced(digits_split):
    """fit_self_training(curriculum=True): round r of R adds, per predicted class, at most r/R of an equal share of
    the unlabelled inputs (the most confident first), so the last round labels about all of them."""
    from patchlab.models.digits import fit, fit_self_training, make_digits_model, predict_logits

    x, y = digits_split.private.images[:40], digits_split.private.labels[:40]
    u = digits_split.public.images[:300]
    sizes = []

    def train(xs, ys):
        sizes.append(len(xs))
        net = make_digits_model("logreg", size=8, seed=0)
        fit(net, xs, ys, epochs=10, lr=1.0, batch_size=len(xs), weight_decay=0.01, optimizer="lbfgs", seed=0)
        return net

    model, used = fit_self_training(train, x, y, u, 3, 0.0, curriculum=True)
    assert sizes[0] == 40 and sizes[1] - 40 <= 10 * 10 and sizes[2] - 40 <= 10 * 20 and used == sizes[3] - 40
    assert 270 <= used <= 300  # about all: 30 per predicted class, fewer where a class is predicted less often
    guess = predict_logits(model, u).argmax(1)
    assert (guess == digits_split.public.labels[:300]).float().mean() > 0.75  # measured 0.83
