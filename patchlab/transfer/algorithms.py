"""Transfer across learning algorithms (Papernot, McDaniel & Goodfellow 2016, "Transferability in Machine
Learning"): a DNN, logistic regression, a linear SVM, a decision tree and k nearest neighbours, each trained on
its own disjoint part of MNIST; adversarial examples crafted on each are scored on all five and on their
majority vote (the 5x5 cross-technique matrix, plus the ensemble column).

Crafting: FGSM directly on the differentiable sources (the CNN, and exact torch copies of the LR and linear SVM
decision functions). The decision tree and kNN have no gradient; as in the paper's black-box setting they are
attacked through a substitute DNN trained on their labels alone by Jacobian augmentation (`substitute.py`), so
their rows (diagonal included) are black-box transfer numbers.
"""

from __future__ import annotations

import time

import torch

from patchlab.data import Digits
from patchlab.errors import PatchlabError
from patchlab.transfer.common import (LinearModel, ProgressFn, SklearnModel, predict, scaled_progress,
                                      train_digits_model)
from patchlab.transfer.matrix import transfer_matrix
from patchlab.transfer.oracle import Oracle
from patchlab.transfer.substitute import SubstituteConfig, train_substitute

TECHNIQUES = ("dnn", "lr", "svm", "dt", "knn")
TITLES = {"dnn": "DNN", "lr": "LR", "svm": "SVM", "dt": "DT", "knn": "kNN", "ens": "Ens"}


class MajorityVote:
    """The techniques' majority vote (ties go to the lowest class), as the paper's ensemble target."""

    outputs = "probs"
    name = "ens"

    def __init__(self, models: list, num_classes: int = 10):
        self.models = models
        self.num_classes = num_classes
        self.input_size = int(getattr(models[0], "input_size", 28))

    def parameters(self):
        return iter(())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        votes = torch.zeros(len(x), self.num_classes)
        for m in self.models:
            votes += torch.nn.functional.one_hot(predict(m, x.cpu()), self.num_classes).float()
        return votes / len(self.models)


def train_techniques(parts: dict[str, Digits], *, seed: int = 0, dnn_epochs: int = 10, knn_k: int = 3,
                     cache_dir=None, progress: ProgressFn | None = None) -> dict:
    """The five models, technique t trained on parts[t] (disjoint parts of the same dataset)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import LinearSVC
    from sklearn.tree import DecisionTreeClassifier

    missing = [t for t in TECHNIQUES if t not in parts]
    if missing:
        raise PatchlabError(f"algorithms: no training part for {', '.join(missing)}")
    size = int(parts["dnn"].images.shape[-1])
    models: dict = {}
    for i, t in enumerate(TECHNIQUES):
        d = parts[t]
        flat = d.images.flatten(1).numpy()
        if t == "dnn":
            models[t] = train_digits_model("cnn", d.images, d.labels, seed=seed, epochs=dnn_epochs, lr=1e-3,
                                           cache_dir=cache_dir, name="dnn",
                                           progress=scaled_progress(progress, i, 1, len(TECHNIQUES)))
        elif t == "lr":
            est = LogisticRegression(max_iter=1000, C=1.0).fit(flat, d.labels.numpy())
            models[t] = LinearModel.from_sklearn(est, size, "lr")
        elif t == "svm":
            est = LinearSVC(C=0.1, max_iter=5000, random_state=seed).fit(flat, d.labels.numpy())
            models[t] = LinearModel.from_sklearn(est, size, "svm")
        elif t == "dt":
            models[t] = SklearnModel(DecisionTreeClassifier(random_state=seed).fit(flat, d.labels.numpy()), size, "dt")
        else:
            models[t] = SklearnModel(KNeighborsClassifier(n_neighbors=knn_k).fit(flat, d.labels.numpy()), size, "knn")
        if progress is not None:
            progress(i + 1, len(TECHNIQUES), {"trained": t})
    return models


def algorithms_matrix(models: dict, seeds: torch.Tensor, x: torch.Tensor, y: torch.Tensor, *, eps: float = 0.3,
                      attack: str = "fgsm", substitute: SubstituteConfig | None = None, seed: int = 0,
                      progress: ProgressFn | None = None) -> dict:
    """The cross-technique matrix. Sources without gradients get a substitute first (labels-only oracle, seeds
    from the attacker's own data); cells are misclassification rates (1 - accuracy) on the evaluation set."""
    start = time.perf_counter()
    cfg = substitute or SubstituteConfig(seed=seed)
    sources, subs = {}, {}
    blind = [t for t, m in models.items() if not isinstance(m, torch.nn.Module)]
    steps = len(blind) + 1
    for j, t in enumerate(blind):
        oracle = Oracle(models[t], output="label")
        res = train_substitute(oracle, seeds, cfg, progress=scaled_progress(progress, j * 1000, 1000, steps * 1000))
        sources[t] = res.model
        agree = float((predict(res.model, x) == predict(models[t], x)).float().mean())
        subs[t] = {"queries": res.queries, "oracle_queries": oracle.queries, "agreement": agree,
                   "rounds": cfg.rounds, "arch": cfg.arch}
    for t, m in models.items():
        sources.setdefault(t, m)
    sources = {t: sources[t] for t in models}
    targets = {**models, "ens": MajorityVote(list(models.values()))}
    mat = transfer_matrix(sources, targets, x, y, attack=attack, eps=eps, seed=seed, num_classes=10,
                          progress=scaled_progress(progress, len(blind) * 1000, 1000, steps * 1000))
    for cell in mat["cells"]:
        acc, (lo, hi) = cell["accuracy"], cell["accuracy_ci95"]
        cell["misclassification_rate"], cell["misclassification_rate_ci95"] = 1 - acc, [1 - hi, 1 - lo]
    mat.update({"experiment": "algorithms", "metric": "misclassification_rate", "substitutes": subs,
                "substitute_settings": cfg.to_dict(), "seconds": time.perf_counter() - start})
    return mat
