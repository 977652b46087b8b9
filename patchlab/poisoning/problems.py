"""The two influence problems of the topic and `explain`, which runs one end to end.

- "dogfish": binary logistic regression on efficientnet_lite0 penultimate features of the dog-vs-fish task
  (`task.build_task`), Koh & Liang's Inception setting on our model and data;
- "digits": the MNIST CNN's last layer. The shared set (MNIST's official 10k test set) is split with
  `split_digits` into a body part (`n_body`), the head's training set (`n_train`) and a test side; the
  `patchlab.models.digits` CNN is trained on the body part, frozen, and its last layer is retrained to the exact
  optimum of a 10-class L2-regularised softmax on the body's 128-d features of the `n_train` images (the
  transfer setting of Koh & Liang's Inception head: the features come from a network that never saw these
  images). `n_body=0` trains the CNN on the head's own images instead (the earlier setup; its features of the
  training points are memorised, a few of them carry most of the Hessian in some direction, and influence
  mis-scales them: see docs/poisoning.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from patchlab.errors import PatchlabError
from patchlab.poisoning import head as H
from patchlab.poisoning import influence as I
from patchlab.progress import ProgressFn
from patchlab.registry import Registry

PROBLEMS: Registry[str] = Registry("influence problem")
PROBLEMS.register("dogfish", "dog vs fish: a logistic-regression head on efficientnet_lite0 features",
                  title="Dog vs fish (Lite0 features)")
PROBLEMS.register("digits", "MNIST: the digits CNN's last layer retrained on its frozen body",
                  title="MNIST CNN's last layer")


@dataclass
class InfluenceSetup:
    name: str
    class_names: list[str]
    train_features: torch.Tensor
    train_labels: torch.Tensor
    test_features: torch.Tensor
    test_labels: torch.Tensor
    train_names: list[str]
    test_names: list[str]
    train_image: Callable[[int], torch.Tensor]
    test_image: Callable[[int], torch.Tensor]
    meta: dict = field(default_factory=dict)


def dogfish_setup(task) -> InfluenceSetup:
    return InfluenceSetup("dogfish", list(task.class_names), task.train_features, task.train_labels,
                          task.test_features, task.test_labels, [v.name for v in task.train],
                          [v.name for v in task.test], lambda i: task.image(task.train[i]),
                          lambda i: task.image(task.test[i]), task.summary())


DIGITS_BODY, DIGITS_TRAIN = 2000, 5000  # defaults of the digits problem (docs/poisoning.md measures the choice)


def digits_setup(mnist_dir: str | Path, n_train: int = DIGITS_TRAIN, n_test: int = -1, n_body: int = DIGITS_BODY,
                 epochs: int = 5, seed: int = 0, cache_dir: str | Path | None = None,
                 progress: ProgressFn | None = None) -> InfluenceSetup:
    """Train (or resume, from a checkpoint in the cache) the digits CNN and take its penultimate features.

    The body is trained on `n_body` images disjoint from the head's `n_train` and the `n_test` test images (-1:
    the rest of the set); `n_body=0` trains it on the head's images."""
    from patchlab.data import load_mnist, split_digits
    from patchlab.models.digits import fit, make_digits_model
    from patchlab.poisoning.features import cache_root

    if n_body < 0:
        raise PatchlabError(f"n_body must be >= 0 (0: the CNN learns from the head's images), got {n_body}")
    digits = load_mnist(mnist_dir, "test")
    sizes = {"body": n_body} if n_body else {}
    parts = split_digits(digits, {**sizes, "train": n_train, "test": n_test}, seed=seed)
    train, test = parts["train"], parts["test"]
    body = parts["body"] if n_body else train
    net = make_digits_model("cnn", size=28, seed=seed)
    ckpt = Path(cache_dir) if cache_dir is not None else cache_root() / "poison-digits"
    # the body part depends only on (n_body, seed): one checkpoint serves every n_train
    ckpt = ckpt / (f"cnn-body{n_body}-e{epochs}-s{seed}.ckpt.pt" if n_body else
                   f"cnn-n{n_train}-e{epochs}-s{seed}.ckpt.pt")
    fit(net, body.images, body.labels, epochs=epochs, seed=seed, checkpoint=ckpt, progress=progress)
    net.eval()
    with torch.no_grad():
        f_train = net.features(train.images).float()
        f_test = net.features(test.images).float()
        cnn_acc = float((net(test.images).argmax(1) == test.labels).float().mean())
    return InfluenceSetup("digits", [str(i) for i in range(10)], f_train, train.labels, f_test, test.labels,
                          [f"mnist-test#{i}" for i in range(len(train.labels))],
                          [f"heldout#{i}" for i in range(len(test.labels))],
                          lambda i: train.images[i], lambda i: test.images[i],
                          {"n_body": n_body, "n_train": n_train, "n_test": len(test.labels), "epochs": epochs,
                           "seed": seed, "cnn_test_accuracy": cnn_acc, "feature_dim": int(f_train.shape[1])})


def misclassified(setup: InfluenceSetup, l2: float = 1e-3) -> list[int]:
    """Test points the head (fitted to its optimum at `l2`) gets wrong: Koh & Liang's Fig. 2 explains one."""
    prob = H.Problem.from_features(setup.train_features, setup.train_labels, len(setup.class_names), l2=l2)
    pred = H.probabilities(H.fit(prob).theta, setup.test_features).argmax(1)
    return (pred != setup.test_labels.cpu()).nonzero().flatten().tolist()


@dataclass
class Explanation:
    setup: InfluenceSetup
    test_index: int
    theta: torch.Tensor
    prob: H.Problem
    influence: I.Influence
    helpful: list[int]
    harmful: list[int]
    checks: list[I.LooCheck]
    test_probs: torch.Tensor
    head_accuracy: float
    fit_seconds: float
    seconds: float

    def to_dict(self, points: bool = False) -> dict:
        s = self.setup
        y = int(s.test_labels[self.test_index])
        pred = int(self.test_probs.argmax())

        def rows(idx):
            return [{"index": i, "name": s.train_names[i], "label": s.class_names[int(s.train_labels[i])],
                     "influence": float(self.influence.scores[i]),
                     "predicted_loo": float(self.influence.predicted_loo[i])} for i in idx]

        return {"problem": s.name, "n": self.prob.n, "num_params": self.prob.num_params, "l2": self.prob.l2,
                "test_index": self.test_index, "test_name": s.test_names[self.test_index],
                "test_label": s.class_names[y], "prediction": s.class_names[pred],
                "confidence": float(self.test_probs[pred]), "test_loss": self.influence.test_loss,
                "head_accuracy": self.head_accuracy, "solver": self.influence.solver.to_dict(),
                "helpful": rows(self.helpful), "harmful": rows(self.harmful),
                "loo": [c.to_dict(points) for c in self.checks], "fit_seconds": self.fit_seconds,
                "seconds": self.seconds, "setup": s.meta}


def explain(setup: InfluenceSetup, test_index: int, l2: float = 1e-3, solver: str = "auto", top: int = 5,
            loo: int | None = 0, compare: tuple[str, ...] = (), lissa: I.LissaConfig | None = None,
            seed: int = 0, progress: ProgressFn | None = None) -> Explanation:
    """Fit the head, compute every training point's influence on test point `test_index`, and (with `loo` > 0,
    or None for all points) check it against leave-one-out retraining for the chosen solver and the `compare`
    solvers."""
    t0 = time.perf_counter()
    solver, compare = I.SOLVERS.resolve(solver), tuple(I.SOLVERS.resolve(c) for c in compare)
    if not 0 <= test_index < len(setup.test_labels):
        raise PatchlabError(f"test_index must lie in 0..{len(setup.test_labels) - 1}, got {test_index}")
    prob = H.Problem.from_features(setup.train_features, setup.train_labels, len(setup.class_names), l2=l2)
    fit = H.fit(prob)
    x_t, y_t = setup.test_features[test_index], int(setup.test_labels[test_index])
    infl = I.influence(fit.theta, prob, x_t, y_t, solver, **({"lissa": lissa} if solver == "lissa" else {}))
    checks: list[I.LooCheck] = []
    if loo is None or loo > 0:
        names = (infl.solver.solver,) + tuple(s for s in compare if s != infl.solver.solver)
        checks, _ = I.check_against_loo(fit.theta, prob, x_t, y_t, names, count=loo, seed=seed, lissa=lissa,
                                        progress=progress)
    probs = H.probabilities(fit.theta, x_t.reshape(1, -1))[0]
    acc = H.accuracy(fit.theta, setup.test_features, setup.test_labels)
    return Explanation(setup, test_index, fit.theta, prob, infl, infl.helpful(top), infl.harmful(top), checks, probs,
                       acc, fit.seconds, time.perf_counter() - t0)
