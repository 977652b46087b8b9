"""The defense scores on data with a planted outlier."""

from __future__ import annotations

import torch

from patchlab.poisoning import head as H
from patchlab.poisoning.defense_view import defense_view, knn_scores, rank_of, spectral_scores, summarize


def test_scores_rank_a_planted_outlier_first():
    g = torch.Generator().manual_seed(0)
    feats = torch.cat([torch.randn(100, 16, generator=g), torch.randn(100, 16, generator=g) + 4])
    labels = torch.cat([torch.zeros(100), torch.ones(100)]).long()
    feats[7] = feats[7] + 12  # far from its class along every axis
    assert rank_of(knn_scores(feats, labels), 7) == 1
    assert rank_of(spectral_scores(feats, labels), 7) == 1
    prob = H.Problem.from_features(feats, labels, 2, l2=1e-2)
    theta = H.fit(prob).theta
    rows = defense_view(theta, prob, feats, feats[150], 1, [7, 20])
    assert rows[0]["rank_knn"] == 1 and rows[0]["top1pct_knn"] and rows[0]["top1pct_cut"] == 2
    assert not rows[1]["top1pct_knn"]
    s = summarize(rows)
    assert s["n_poisons"] == 2 and s["knn"]["top1pct_rate"] == 0.5 and s["knn"]["ci95"][0] < 0.5 < s["knn"]["ci95"][1]


def test_rank_counts_strictly_higher_scores():
    scores = torch.tensor([3.0, 1.0, 3.0, 5.0])
    assert [rank_of(scores, i) for i in range(4)] == [2, 4, 2, 1]
