"""The oracle reveals only what it should and counts every image exactly, budget included."""

from __future__ import annotations

import threading

import pytest
import torch

from patchlab.errors import PatchlabError
from patchlab.transfer.oracle import Oracle, QueryBudgetExceeded


def test_counter_is_exact_and_budget_refuses_whole_calls(d8, d8_victim):
    x = d8["test"].images
    oracle = Oracle(d8_victim, output="label", budget=100)
    sizes = [1, 7, 30, 0, 12, 50]
    for s in sizes:
        oracle(x[:s])
    assert oracle.queries == 100 and oracle.remaining == 0 and oracle.calls == len(sizes)
    with pytest.raises(QueryBudgetExceeded, match="100 of 100 used, 1 more"):
        oracle(x[:1])
    assert oracle.queries == 100  # a refused call counts nothing
    # repeats count every time, and a call just over the budget is refused whole
    o2 = Oracle(d8_victim, budget=10)
    o2(x[:4])
    o2(x[:4])
    with pytest.raises(QueryBudgetExceeded):
        o2(x[:3])
    assert o2.queries == 8
    o2(x[:2])
    assert o2.queries == 10


def test_counter_is_exact_under_concurrent_callers(d8, d8_victim):
    x = d8["test"].images[:5]
    oracle = Oracle(d8_victim, budget=1000)
    refused = []

    def worker():
        for _ in range(30):
            try:
                oracle(x)
            except QueryBudgetExceeded:
                refused.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert oracle.queries == 1000 and len(refused) == 8 * 30 - 200


def test_outputs_reveal_only_what_they_should(d8, d8_victim):
    x = d8["test"].images[:20]
    full = Oracle(d8_victim, output="probs")(x)
    assert full.probs.shape == (20, 10) and torch.allclose(full.probs.sum(1), torch.ones(20), atol=1e-5)
    label = Oracle(d8_victim, output="label")(x)
    assert label.probs is None and label.topk is None and label.top1_prob is None
    assert torch.equal(label.labels, full.probs.argmax(1))
    top1 = Oracle(d8_victim, output="top1")(x)
    assert torch.allclose(top1.top1_prob, full.probs.max(1).values)
    topk = Oracle(d8_victim, output="topk", k=3)(x)
    assert topk.topk[0].shape == (20, 3) and topk.probs is None
    soft = topk.soft_targets(10)  # top-3 kept exactly, the rest spread evenly
    assert torch.allclose(soft.sum(1), torch.ones(20), atol=1e-5)
    assert torch.allclose(soft.gather(1, topk.topk[0]), topk.topk[1], atol=1e-6)
    rounded = Oracle(d8_victim, output="probs", decimals=2)(x).probs
    assert torch.allclose(rounded, torch.round(full.probs, decimals=2))


def test_bad_queries_are_one_line_errors(d8_victim):
    oracle = Oracle(d8_victim)
    with pytest.raises(PatchlabError, match="in \\[0, 1\\]"):
        oracle(torch.full((1, 1, 8, 8), 2.0))
    with pytest.raises(PatchlabError, match="float image tensors"):
        oracle(torch.zeros(8, 8))
    with pytest.raises(PatchlabError, match="unknown oracle output"):
        Oracle(d8_victim, output="logits")
    assert oracle.queries == 0
