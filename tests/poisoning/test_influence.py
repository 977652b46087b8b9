"""The head's closed forms against autograd, the solvers against each other, and influence against leave-one-out
retraining on real problems (Lite0 dog-vs-fish features; the MNIST CNN's last layer)."""

from __future__ import annotations

import pytest
import torch

from patchlab.errors import PatchlabError
from patchlab.poisoning import head as H
from patchlab.poisoning import influence as I


def _random_problem(n=40, d=5, c=3, seed=0, l2=0.1):
    g = torch.Generator().manual_seed(seed)
    prob = H.Problem.from_features(torch.randn(n, d, generator=g), torch.randint(0, c, (n,), generator=g), c, l2=l2)
    prob.w = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    return prob, torch.randn(prob.shape, generator=g, dtype=torch.float64)


def test_closed_forms_match_autograd():
    prob, theta = _random_problem()

    def objective(flat):
        t = flat.view(prob.shape)
        ce = torch.nn.functional.cross_entropy(H.logits(t, prob.x), prob.y, reduction="none")
        return (prob.w * ce).sum() / prob.n + 0.5 * prob.l2 * t.pow(2).sum()

    flat = theta.flatten().requires_grad_(True)
    g_auto, = torch.autograd.grad(objective(flat), flat)
    h_auto = torch.autograd.functional.hessian(objective, theta.flatten())
    assert torch.allclose(H.gradient(theta, prob).flatten(), g_auto, atol=1e-12)
    assert torch.allclose(H.hessian(theta, prob), h_auto, atol=1e-12)
    v = torch.randn(prob.shape, dtype=torch.float64)
    assert torch.allclose(H.hvp(theta, v, prob).flatten(), h_auto @ v.flatten(), atol=1e-12)
    assert abs(H.objective(theta, prob) - float(objective(theta.flatten()))) < 1e-12


def test_fit_reaches_the_optimum_and_refits_after_leaving_a_point_out():
    prob, _ = _random_problem(n=200, d=8, c=2, l2=1e-2)
    res = H.fit(prob)
    assert res.grad_norm <= 1e-9 and res.method == "exact"
    w = prob.weights().clone()
    w[3] = 0
    refit = H.fit(prob.replace(w=w), init=res.theta, factor=H.factorize(res.theta, prob), tol=1e-12)
    cold = H.fit(prob.replace(w=w), tol=1e-12)
    assert torch.allclose(refit.theta, cold.theta, atol=1e-10)
    assert refit.iterations < cold.iterations  # the warm start with the old factor is the cheap path


def test_auto_solver_uses_cg_above_the_limit_and_all_solvers_agree(monkeypatch):
    prob, _ = _random_problem(n=300, d=20, c=4, l2=1e-2)
    theta = H.fit(prob).theta
    v = torch.randn(prob.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    s_exact, info = I.inverse_hvp(theta, prob, v, "exact")
    assert info.residual < 1e-10
    monkeypatch.setattr(H, "EXACT_LIMIT", 50)
    s_cg, info = I.inverse_hvp(theta, prob, v, "auto")
    assert info.solver == "cg" and "conjugate gradients" in info.reason and info.iterations > 0
    assert torch.allclose(s_cg, s_exact, rtol=1e-6, atol=1e-8)
    s_lissa, info = I.inverse_hvp(theta, prob, v, "lissa", lissa=I.LissaConfig(depth=1500, repeats=4))
    assert info.solver == "lissa" and info.extra["scale"] > 0
    # stochastic (minibatch Hessians): close in direction, within 20% in norm
    cosine = float((s_lissa * s_exact).sum() / (s_lissa.norm() * s_exact.norm()))
    assert cosine > 0.98 and float((s_lissa - s_exact).norm() / s_exact.norm()) < 0.2
    with pytest.raises(PatchlabError, match="unknown influence solver"):
        I.inverse_hvp(theta, prob, v, "newton")


def test_exact_influence_matches_leave_one_out_on_lite0_features(small_task):
    """Acceptance: every training point of the small dog-vs-fish task left out and the head retrained."""
    from patchlab.poisoning.problems import dogfish_setup, explain

    ex = explain(dogfish_setup(small_task), 0, loo=None, compare=("cg", "lissa"),
                 lissa=I.LissaConfig(depth=300, repeats=2))
    checks = {c.solver: c for c in ex.checks}
    assert ex.influence.solver.solver == "exact" and checks["exact"].n == len(small_task.train)
    assert checks["exact"].pearson >= 0.95, checks["exact"]
    assert checks["cg"].pearson >= 0.95
    assert checks["lissa"].pearson >= 0.9  # stochastic, seeded: reported beside the exact one
    scores = ex.influence.scores
    assert float(scores[ex.helpful[0]]) == float(scores.min()) and float(scores[ex.harmful[0]]) == float(scores.max())
    d = ex.to_dict()
    assert d["n"] == len(small_task.train) and len(d["helpful"]) == 5 and d["loo"][0]["pearson"] >= 0.95


def test_mnist_cnn_last_layer_influence_matches_leave_one_out(mnist_dir, tmp_path):
    """The digits problem as the benchmark runs it, scaled down: the CNN body learns from images the head never
    trains on; every reported test point (two fixed ones and the first the head gets wrong) agrees with
    leave-one-out retraining."""
    from patchlab.poisoning.problems import digits_setup, explain, misclassified

    setup = digits_setup(mnist_dir, n_train=1000, n_test=200, n_body=300, epochs=2, cache_dir=tmp_path)
    assert setup.train_features.shape == (1000, 128) and setup.meta["cnn_test_accuracy"] > 0.5
    fixed = [0, len(setup.test_labels) - 1]
    wrong = [i for i in misclassified(setup) if i not in fixed]
    assert wrong, "a 2-epoch CNN on 300 images gets some of 200 test digits wrong"
    for test_index in fixed + wrong[:1]:
        ex = explain(setup, test_index, loo=40)
        assert ex.prob.num_params == 9 * 129 and ex.influence.solver.solver == "exact"
        assert ex.checks[0].pearson >= 0.95, (test_index, ex.checks[0])


def test_digits_setup_keeps_the_cnn_body_apart_from_the_head_and_test_images(mnist_dir, tmp_path):
    from patchlab.data import load_mnist, split_digits
    from patchlab.poisoning.problems import digits_setup

    setup = digits_setup(mnist_dir, n_train=200, n_test=100, n_body=100, epochs=1, cache_dir=tmp_path)
    parts = split_digits(load_mnist(mnist_dir, "test"), {"body": 100, "train": 200, "test": 100}, seed=0)
    assert torch.equal(setup.train_image(7), parts["train"].images[7])
    assert torch.equal(setup.test_image(3), parts["test"].images[3])
    body = parts["body"].images.flatten(1)
    for images in (parts["train"].images, parts["test"].images):  # no body image among the head's or test images
        assert torch.cdist(images.flatten(1), body).min() > 0
    assert setup.meta["n_body"] == 100 and (tmp_path / "cnn-body100-e1-s0.ckpt.pt").exists()
    # n_body = 0: the earlier setup, the CNN learns from the head's own images
    own = digits_setup(mnist_dir, n_train=200, n_test=100, n_body=0, epochs=1, cache_dir=tmp_path)
    assert (tmp_path / "cnn-n200-e1-s0.ckpt.pt").exists() and own.meta["n_body"] == 0
    assert torch.equal(own.train_image(0), split_digits(load_mnist(mnist_dir, "test"), {"train": 200, "test": 100},
                                                        seed=0)["train"].images[0])
    with pytest.raises(PatchlabError, match="n_body"):
        digits_setup(mnist_dir, n_train=200, n_body=-1, cache_dir=tmp_path)
