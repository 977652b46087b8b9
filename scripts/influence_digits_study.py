"""Influence vs leave-one-out on the MNIST CNN's last layer: why the agreement falls short and what restores it.

For each setting (CNN body images, head training images, test points) it fits the head, computes every training
point's influence with the exact solver, retrains the head without each of `--loo` points (half the largest |I|,
half at random, as `influence.loo_indices` draws them) and prints one JSON line per test point:

- pearson / spearman: -I/n against the actual change of the test loss (the check of docs/poisoning.md);
- pearson_lin: -I/n against g_test . (theta_-i - theta), the actual parameter change seen through the test loss's
  gradient. High pearson_lin with low pearson means the parameters move as predicted and the test loss is what
  bends (a saturated softmax); low pearson_lin means the parameter change itself is mis-predicted;
- ratio_max: the largest ||theta_-i - theta|| / ||H^-1 g_i / n|| (with --diagnose): a removal that moves the head
  several times further than the first-order prediction (a point that alone carries a direction of the Hessian);
- pearson_newton (with --diagnose, a *different estimator*, reported only to locate the error): the test loss after
  one Newton step with the Hessian of the n - 1 remaining points, H_-i^-1 g_i / n.

Run (one thread, niced, as on the shared machine):
  python scripts/influence_digits_study.py --body 2000 --train 5000 --tests 0,1,-1,miss --diagnose
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from patchlab.data import shared_data_dir
from patchlab.poisoning import head as H
from patchlab.poisoning import influence as I
from patchlab.poisoning.problems import digits_setup, misclassified


def test_points(spec: str, setup, l2: float) -> list[int]:
    """Indices from a comma list: numbers (negative from the end), `miss` (the first misclassified test point,
    Koh & Liang's Fig. 2 choice) and `randK` (K more drawn with seed 0)."""
    n = len(setup.test_labels)
    out: list[int] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        if part == "miss":
            out.append(misclassified(setup, l2)[0])
        elif part.startswith("rand"):
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
            out += [i for i in perm if i not in out][:int(part[4:])]
        else:
            out.append(int(part) % n)
    return out


def study(setup, tests: str, l2: float, count: int, diagnose: bool) -> list[dict]:
    prob = H.Problem.from_features(setup.train_features, setup.train_labels, 10, l2=l2)
    t0 = time.perf_counter()
    fit = H.fit(prob, tol=1e-12)
    factor = H.factorize(fit.theta, prob)
    eig = torch.linalg.eigvalsh(H.hessian(fit.theta, prob))
    head = {"n_body": setup.meta["n_body"], "n_train": prob.n, "n_test": len(setup.test_labels), "l2": l2,
            "head_accuracy": H.accuracy(fit.theta, setup.test_features, setup.test_labels),
            "hessian_eig_min": float(eig[0]), "hessian_eig_max": float(eig[-1]), "fit_seconds": time.perf_counter() - t0}
    print(json.dumps(head), flush=True)
    hess = H.hessian(fit.theta, prob) if diagnose else None
    rows = []
    for t in test_points(tests, setup, l2):
        t1 = time.perf_counter()
        xt, yt = setup.test_features[t], int(setup.test_labels[t])
        inf = I.influence(fit.theta, prob, xt, yt, "exact")
        idx = I.loo_indices(inf.scores, count, 0)
        xb, yb = H.with_bias(xt.reshape(1, -1)), torch.tensor([yt])
        base = float(H.losses(fit.theta, xb, yb)[0])
        g_test = H.example_gradient(fit.theta, xb, yb)[0]
        actual, lin, newton, ratio = [], [], [], []
        for i in idx:
            w = prob.weights().clone()
            w[i] = 0.0
            theta_i = H.fit(prob.replace(w=w), init=fit.theta, factor=factor, tol=1e-12).theta
            actual.append(float(H.losses(theta_i, xb, yb)[0]) - base)
            lin.append(float((g_test * (theta_i - fit.theta)).sum()))
            if diagnose:
                g_i = H.example_gradient(fit.theta, prob.x[i:i + 1], prob.y[i:i + 1])[0]
                ratio.append(float((theta_i - fit.theta).norm() / (factor.solve(g_i) / prob.n).norm()))
                one = torch.zeros(prob.n, dtype=torch.float64)
                one[i] = 1.0
                h_i = H.hessian(fit.theta, prob.replace(w=one))
                h_i.diagonal().sub_(prob.l2)
                step = torch.linalg.solve(hess - h_i, g_i.flatten() / prob.n).reshape(prob.shape)
                newton.append(float(H.losses(fit.theta + step, xb, yb)[0]) - base)
        pred, act = inf.predicted_loo[idx], torch.tensor(actual, dtype=torch.float64)
        row = {"test_index": t, "label": yt, "correct": bool(H.probabilities(fit.theta, xt.reshape(1, -1))[0]
                                                               .argmax() == yt),
               "test_loss": base, "n_loo": len(idx), "pearson": I.pearson(pred, act),
               "spearman": I.spearman(pred, act),
               "pearson_lin": I.pearson(pred, torch.tensor(lin, dtype=torch.float64))}
        if diagnose:
            row.update(ratio_max=max(ratio), pearson_newton=I.pearson(torch.tensor(newton, dtype=torch.float64), act))
        row["seconds"] = round(time.perf_counter() - t1, 1)
        print(json.dumps({**head, **row}), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--body", type=int, default=2000, help="CNN body images (0: the head's own images)")
    ap.add_argument("--train", type=int, default=5000, help="head training images")
    ap.add_argument("--test", type=int, default=-1, help="test images (-1: the rest)")
    ap.add_argument("--tests", default="0,1,-1,miss", help="test points: numbers, miss, randK")
    ap.add_argument("--l2", type=float, default=1e-3)
    ap.add_argument("--loo", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--diagnose", action="store_true")
    ap.add_argument("--cache-dir", default=None)
    a = ap.parse_args()
    setup = digits_setup(shared_data_dir() / "mnist", n_train=a.train, n_test=a.test, n_body=a.body,
                         epochs=a.epochs, cache_dir=a.cache_dir)
    study(setup, a.tests, a.l2, a.loo, a.diagnose)


if __name__ == "__main__":
    main()
