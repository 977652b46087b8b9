"""PATE levers on the shared 10k MNIST split (docs/results/privacy.md, "PATE levers"): what each change does to the
student's accuracy at the benchmark's privacy settings, with the data-dependent analysis unchanged.

    python scripts/pate_levers.py [--out test-artifacts/pate-levers]

Baseline: the benchmark's best run (250 logistic-regression teachers on ScatterNet features, 24 private images each,
Confident-GNMax sigma 15, T 200, sigma1 100, 600 queries; student = the same linear model + 3 rounds of
self-training). Levers (each alone, then combined):
- pca-K: teachers and student on the top K principal components of the ScatterNet features, the components fitted on
  the PUBLIC images only (no labels; the public data is not private), so a teacher's 24 examples fit K weights per
  class instead of 3969;
- full: with pca-K, the student still trains on the full features (the PCA only helps the 24-image teachers);
- clean: self-training, but first drop the answered labels that a student trained on the other four of five folds
  of the answers contradicts (a filter against the aggregator's wrong labels; post-processing, no privacy cost);
- oracle (a diagnostic, not a PATE run): the self-training student given the TRUE labels of the answered queries,
  to tell label noise from label count;
- spread: the student is label spreading (a kNN graph over the public images' features) from the answered queries,
  then the linear model trained on the propagated labels (post-processing of the answers: no privacy cost).
Every run uses `pate.aggregate` and `pate_analysis.analyse` on the teachers' vote counts, exactly as `run_pate`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from patchlab.data import shared_data_dir
from patchlab.privacy.data import privacy_data
from patchlab.privacy.pate import aggregate, fixed_features, partition, vote_counts
from patchlab.privacy.pate_analysis import analyse

SETTINGS = dict(aggregator="confident", sigma=15.0, threshold=200.0, sigma1=100.0)
QUERIES, TEACHERS, DELTA = 600, 250, 1e-5


def normalise(f: torch.Tensor) -> torch.Tensor:
    """The scatter model's parameter-free GroupNorm (27 groups), flattened."""
    return torch.nn.functional.group_norm(f, 27).flatten(1)


def logreg(x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int = 150, lr: float = 0.05,
           wd: float = 0.02) -> torch.nn.Linear:
    """The benchmark's teacher: full-batch Adam, L2 by weight decay."""
    torch.manual_seed(seed)
    lin = torch.nn.Linear(x.shape[1], 10)
    opt = torch.optim.Adam(lin.parameters(), lr=lr, weight_decay=wd)
    for _ in range(epochs):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(lin(x), y).backward()
        opt.step()
    return lin


def spread(x_pub: torch.Tensor, idx: np.ndarray, labels: np.ndarray, k: int = 10) -> np.ndarray:
    from sklearn.semi_supervised import LabelSpreading

    y = -np.ones(len(x_pub), dtype=int)
    y[idx] = labels
    return LabelSpreading(kernel="knn", n_neighbors=k, alpha=0.2, max_iter=100).fit(x_pub.numpy(), y).transduction_


def run(feats: dict, data, pca: int | None, student: str, student_pca: bool = True, queries: int = QUERIES,
        threshold: float = SETTINGS["threshold"], seed: int = 0) -> dict:
    t0 = time.perf_counter()
    f = full = {k: normalise(v) for k, v in feats.items()}
    if pca:
        mean = f["public"].mean(0)
        _, _, v = torch.linalg.svd(f["public"] - mean, full_matrices=False)  # public images only, no labels
        proj = v[:pca].T
        f = {k: (x - mean) @ proj for k, x in f.items()}
        scale = f["public"].std()
        f = {k: x / scale for k, x in f.items()}
    parts = partition(len(data.private), TEACHERS, seed)
    y_priv = data.private.labels
    teachers = [logreg(f["private"][idx], y_priv[idx], seed * 10_007 + i) for i, idx in enumerate(parts)]
    with torch.no_grad():
        preds = torch.stack([t(f["public"][:queries]).argmax(1) for t in teachers])
        test_acc = [float((t(f["test"]).argmax(1) == data.test.labels).float().mean()) for t in teachers]
    counts = vote_counts(preds, 10)
    rng = np.random.default_rng(seed + 4242)
    agg = aggregate(counts, SETTINGS["aggregator"], rng, sigma=SETTINGS["sigma"], threshold=threshold,
                    sigma1=SETTINGS["sigma1"])
    an = analyse(counts, SETTINGS["aggregator"], DELTA, sigma=SETTINGS["sigma"], threshold=threshold,
                 sigma1=SETTINGS["sigma1"], answered=agg.answered)
    idx = np.flatnonzero(agg.answered)
    ys = agg.labels[idx]
    truth = data.public.labels[:queries].numpy()
    if not student_pca:  # the student on the full features
        f = full
    x_pub = f["public"]
    if student == "oracle":  # diagnostic only (uses true labels): the same student with every answer correct
        ys = truth[idx]
    if student == "spread":
        y_all = torch.as_tensor(spread(x_pub, idx, ys))
        stud = logreg(x_pub, y_all, seed + 777)
    else:  # self-training, 3 rounds at confidence >= 0.9, as the benchmark
        xs, yt = x_pub[torch.as_tensor(idx)], torch.as_tensor(ys, dtype=torch.long)
        rest = torch.as_tensor(np.setdiff1d(np.arange(len(x_pub)), idx))
        stud = logreg(xs, yt, seed + 777)
        if student == "clean":  # drop the answers that a student trained on the other folds contradicts
            fold = torch.arange(len(xs)) % 5
            agree = torch.ones(len(xs), dtype=torch.bool)
            for k in range(5):
                m = logreg(xs[fold != k], yt[fold != k], seed + 777)
                with torch.no_grad():
                    agree[fold == k] = m(xs[fold == k]).argmax(1) == yt[fold == k]
            xs, yt = xs[agree], yt[agree]
            stud = logreg(xs, yt, seed + 777)
        for _ in range(3):
            with torch.no_grad():
                conf, guess = stud(x_pub[rest]).softmax(1).max(1)
            keep = conf >= 0.9
            stud = logreg(torch.cat([xs, x_pub[rest][keep]]), torch.cat([yt, guess[keep]]), seed + 777)
    with torch.no_grad():
        acc = float((stud(f["test"]).argmax(1) == data.test.labels).float().mean())
    return {"teachers": TEACHERS, "sigma": SETTINGS["sigma"], "sigma1": SETTINGS["sigma1"], "pca": pca,
            "student": student, "student_features": "pca" if (pca and student_pca) else "full",
            "queries": queries, "threshold": threshold, "teacher_acc": float(np.mean(test_acc)),
            "answered": int(agg.answered.sum()), "label_acc": float((ys == truth[idx]).mean()) if len(idx) else 0.0,
            "student_acc": acc, "epsilon": an.epsilon(), "epsilon_independent": an.epsilon(dependent=False),
            "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="test-artifacts/pate-levers")
    ap.add_argument("--runs", default="none:self,none:spread,64:self,32:self,64:spread,32:spread,128:self")
    ap.add_argument("--teachers", type=int, default=TEACHERS)
    ap.add_argument("--sigma", type=float, default=SETTINGS["sigma"])
    ap.add_argument("--sigma1", type=float, default=SETTINGS["sigma1"])
    args = ap.parse_args()
    globals()["TEACHERS"] = args.teachers
    SETTINGS.update(sigma=args.sigma, sigma1=args.sigma1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = privacy_data(shared_data_dir() / "mnist", seed=0)
    feats = fixed_features(data, out)
    rows = []
    for spec in args.runs.split(","):  # pca:student[:full[:queries[:threshold]]]
        pca, student, *rest = spec.split(":")
        r = run(feats, data, None if pca == "none" else int(pca), student,
                student_pca=not (rest and rest[0] == "full"), queries=int(rest[1]) if len(rest) > 1 else QUERIES,
                threshold=float(rest[2]) if len(rest) > 2 else SETTINGS["threshold"])
        rows.append(r)
        print(json.dumps(r), flush=True)
    (out / "levers.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
