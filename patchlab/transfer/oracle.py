"""Black-box access to a victim model: only its answers (a label, the top-1 with its probability, the top-k, or
all probabilities), with an exact count of the images queried and an optional budget.

    oracle = Oracle(victim, output="label", budget=6400)
    answer = oracle(x)          # answer.labels; answer.probs for output="probs"
    oracle.queries              # images answered so far, exactly

Each image sent counts one query, repeats included; a call that would exceed the budget is refused whole (and
counts nothing). The victim is any callable on [0, 1] images returning logits (torch models) or probabilities
(objects with `outputs = "probs"`, e.g. `SklearnModel`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch

from patchlab.errors import PatchlabError
from patchlab.transfer.common import model_name, probabilities

OUTPUTS = ("label", "top1", "topk", "probs")


class QueryBudgetExceeded(PatchlabError):
    """The oracle refused a call that would go past its query budget."""


@dataclass
class Answer:
    labels: torch.Tensor                     # (N,) top-1 class, always given
    probs: torch.Tensor | None = None        # (N, K) for output="probs"
    top1_prob: torch.Tensor | None = None    # (N,) for output="top1"
    topk: tuple[torch.Tensor, torch.Tensor] | None = None  # (indices (N, k), probabilities (N, k)) for "topk"

    def soft_targets(self, num_classes: int) -> torch.Tensor | None:
        """The answer as a distribution over classes, for training a copy: the probabilities themselves, or the
        top-k ones with the rest of the mass spread evenly over the other classes (the least informative
        completion); None for label-only answers."""
        if self.probs is not None:
            return self.probs
        if self.topk is not None:
            idx, p = self.topk
            rest = (1 - p.sum(1, keepdim=True)).clamp_min(0) / max(num_classes - idx.shape[1], 1)
            out = rest.expand(len(p), num_classes).clone()
            out.scatter_(1, idx, p)
            return out / out.sum(1, keepdim=True)
        return None


class Oracle:
    """A victim behind a query interface that reveals `output` only and counts every image exactly."""

    def __init__(self, victim, output: str = "label", budget: int | None = None, k: int = 5,
                 decimals: int | None = None, batch_size: int = 500, dtype: torch.dtype = torch.float32):
        if output not in OUTPUTS:
            raise PatchlabError(f"unknown oracle output '{output}' (choose from {', '.join(OUTPUTS)})")
        if budget is not None and int(budget) < 0:
            raise PatchlabError(f"budget must be >= 0, got {budget}")
        if int(k) < 1:
            raise PatchlabError(f"k must be >= 1, got {k}")
        self.victim = victim
        self.output = output
        self.budget = None if budget is None else int(budget)
        self.k = int(k)
        self.decimals = decimals  # round probabilities like an API that prints a few digits (Tramèr's defence)
        self.batch_size = int(batch_size)
        self.dtype = dtype
        self.name = model_name(victim, "victim")
        self._queries = 0
        self._calls = 0
        self._lock = threading.Lock()

    @property
    def queries(self) -> int:
        """Images answered so far."""
        return self._queries

    @property
    def calls(self) -> int:
        return self._calls

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else self.budget - self._queries

    def _check(self, x) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
            raise PatchlabError("oracle queries are float image tensors (N, C, H, W) in [0, 1]")
        if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
            raise PatchlabError("oracle queries must lie in [0, 1]")
        return x.detach()

    def __call__(self, x: torch.Tensor) -> Answer:
        x = self._check(x)
        n = len(x)
        with self._lock:
            if self.budget is not None and self._queries + n > self.budget:
                raise QueryBudgetExceeded(f"query budget exhausted: {self._queries} of {self.budget} used, "
                                          f"{n} more asked")
            self._queries += n  # reserved now so that concurrent callers cannot both pass the check
            self._calls += 1
        try:
            probs = probabilities(self.victim, x, self.batch_size).to(self.dtype)
        except BaseException:
            with self._lock:
                self._queries -= n
                self._calls -= 1
            raise
        if self.decimals is not None:
            probs = torch.round(probs, decimals=int(self.decimals))
        labels = probs.argmax(1)
        if self.output == "label":
            return Answer(labels)
        if self.output == "top1":
            return Answer(labels, top1_prob=probs.gather(1, labels[:, None]).squeeze(1))
        if self.output == "topk":
            p, idx = probs.topk(min(self.k, probs.shape[1]), dim=1)
            return Answer(labels, topk=(idx, p))
        return Answer(labels, probs=probs)

    def describe(self) -> dict:
        return {"victim": self.name, "output": self.output, "budget": self.budget, "queries": self._queries,
                **({"k": self.k} if self.output == "topk" else {}),
                **({"decimals": self.decimals} if self.decimals is not None else {})}
