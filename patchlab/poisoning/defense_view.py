"""What a simple data-sanitisation defense sees: each poison's rank among all training points by

- training loss under the poisoned model (high loss = suspicious; the classic "drop the hardest points" filter),
- influence on the target's loss (I_up,loss; what a defender who knows the victim prediction would inspect),
- feature-space outlier score: mean distance to the k nearest training points of the same label (the Deep k-NN
  defense of Peri et al. 2020) and the spectral-signature score of Tran et al. (2018): the squared projection of a
  point's centred feature on its class's top singular vector.

Rank 1 is the most suspicious point. A poison is "found" by a score when its rank is within the top 1% of the
training set (ceil(n / 100) points).
"""

from __future__ import annotations

import math

import torch

from patchlab.poisoning import head as H

SCORES = ("loss", "influence", "knn", "spectral")


def knn_scores(features: torch.Tensor, labels: torch.Tensor, k: int = 10) -> torch.Tensor:
    """Mean Euclidean distance from each point to its k nearest other points of the same label."""
    f = features.double()
    out = torch.zeros(len(f), dtype=torch.float64)
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().flatten()
        d = torch.cdist(f[idx], f[idx])
        d.fill_diagonal_(float("inf"))
        kk = max(1, min(k, len(idx) - 1))
        out[idx] = d.topk(kk, largest=False).values.mean(1) if len(idx) > 1 else 0.0
    return out


def spectral_scores(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Tran et al. (2018): per class, (centred feature . top right singular vector)^2."""
    f = features.double()
    out = torch.zeros(len(f), dtype=torch.float64)
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().flatten()
        centred = f[idx] - f[idx].mean(0)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        out[idx] = (centred @ vh[0]).pow(2)
    return out


def rank_of(scores: torch.Tensor, index: int) -> int:
    """1 + the number of points scored strictly higher."""
    return 1 + int((scores > scores[index]).sum())


def defense_view(theta: torch.Tensor, prob: H.Problem, features: torch.Tensor, target_x: torch.Tensor,
                 target_y: int, poisons: list[int], k: int = 10) -> list[dict]:
    """One row per poison: its rank under each score and whether it is in the top 1%.

    `prob` / `features` are the *poisoned* training set (the poisons' rows hold their poisoned features) and `theta`
    the head retrained on it."""
    from patchlab.poisoning.influence import influence

    n = prob.n
    cut = max(1, math.ceil(n / 100))
    scores = {
        "loss": H.losses(theta, prob.x, prob.y),
        "influence": influence(theta, prob, target_x, target_y).scores,
        "knn": knn_scores(features, prob.y, k),
        "spectral": spectral_scores(features, prob.y),
    }
    rows = []
    for p in poisons:
        row: dict = {"poison": int(p), "n": n, "top1pct_cut": cut}
        for name in SCORES:
            r = rank_of(scores[name], p)
            row[f"rank_{name}"] = r
            row[f"top1pct_{name}"] = r <= cut
        rows.append(row)
    return rows


def summarize(rows: list[dict]) -> dict:
    """Per score: fraction of poisons in the top 1% (with a Wilson interval) and the median rank."""
    from patchlab.stats import wilson_interval

    out: dict = {"n_poisons": len(rows)}
    for name in SCORES:
        hits = sum(r[f"top1pct_{name}"] for r in rows)
        ranks = sorted(r[f"rank_{name}"] for r in rows)
        out[name] = {"top1pct_rate": hits / len(rows) if rows else 0.0,
                     "ci95": list(wilson_interval(hits, len(rows))),
                     "median_rank": ranks[len(ranks) // 2] if ranks else None}
    return out
