"""Equation-solving extraction of multiclass logistic regression (Tramèr et al. 2016, "Stealing Machine Learning
Models via Prediction APIs").

A softmax model answers p_k(x) = exp(w_k·x + b_k) / Σ_j exp(w_j·x + b_j). For every class k,
log(p_k / p_0) = (w_k - w_0)·x + (b_k - b_0) is linear in the unknowns, so one answer with confidences gives K-1
equations, and d+1 queries in general position give (d+1) equations per class: exactly the (K-1)(d+1)
identifiable parameters. Softmax does not change when the same vector is added to every w_k (and the same number
to every b_k), so a model is only determined up to that shift; both victim and copy are compared in the centred
form Σ_k w_k = 0, Σ_k b_k = 0, which fixes it and predicts identically.
"""

from __future__ import annotations

import time

import torch

from patchlab.errors import PatchlabError
from patchlab.transfer.oracle import Oracle


def centred(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The representative with zero mean over classes (softmax-equivalent to the input)."""
    return weight - weight.mean(0, keepdim=True), bias - bias.mean()


def extract_softmax_regression(oracle: Oracle, dim: int, *, queries: int | None = None, shape=None,
                               seed: int = 0) -> dict:
    """Recover (W, b) of a softmax regression from its probabilities with `queries` random inputs (default
    d + 1, the minimum). Inputs are uniform in [0, 1]^d, reshaped to `shape` (e.g. (1, 28, 28)) for the oracle.
    Returns the centred weight (K, d) and bias (K,) in float64, the queries used and the residual."""
    if oracle.output != "probs":
        raise PatchlabError("equation solving needs confidence scores: an oracle with output='probs'")
    n = int(queries or dim + 1)
    if n < dim + 1:
        raise PatchlabError(f"{n} queries cannot determine {dim + 1} unknowns per class; use at least {dim + 1}")
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(int(seed))
    x = torch.rand((n, dim), generator=gen, dtype=torch.float64)
    before = oracle.queries
    probs = oracle(x.reshape(n, *(shape or (dim,))) if shape else x.reshape(n, 1, 1, dim)).probs.double()
    if bool((probs <= 0).any()):
        raise PatchlabError("the oracle returned zero probabilities (rounded or underflowed); equation solving "
                            "needs them positive")
    logp = probs.log()
    rhs = logp - logp[:, :1]                                     # log(p_k / p_0), (n, K)
    design = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], 1)  # (n, d + 1)
    sol = torch.linalg.lstsq(design, rhs).solution               # (d + 1, K): w_k - w_0 and b_k - b_0
    residual = float((design @ sol - rhs).abs().max())
    weight, bias = centred(sol[:-1].T.contiguous(), sol[-1].contiguous())
    return {"weight": weight, "bias": bias, "queries": oracle.queries - before, "dim": dim,
            "num_classes": probs.shape[1], "residual": residual, "seconds": time.perf_counter() - start,
            "equations_per_class": n}


def compare_parameters(victim_weight: torch.Tensor, victim_bias: torch.Tensor, stolen: dict) -> dict:
    """Largest absolute and relative differences between the centred victim and the stolen parameters."""
    vw, vb = centred(victim_weight.double(), victim_bias.double())
    dw, db = (stolen["weight"] - vw).abs(), (stolen["bias"] - vb).abs()
    scale = max(float(vw.abs().max()), float(vb.abs().max()), 1e-30)
    return {"max_abs_error": max(float(dw.max()), float(db.max())), "max_weight_error": float(dw.max()),
            "max_bias_error": float(db.max()), "relative_error": max(float(dw.max()), float(db.max())) / scale}
