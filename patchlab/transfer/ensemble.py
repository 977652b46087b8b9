"""Ensemble transfer attacks (Liu et al. 2017, "Delving into Transferable Adversarial Examples and Black-box
Attacks"): optimise against k models at once and score on the held-out one.

Liu et al. fuse the models' softmax outputs, -log(Σᵢ αᵢ·softmaxᵢ(x)[y]), and report, for each model i, the
ensemble of all the others ("-model i") against every model (their Table 4, non-targeted and targeted, with RMSD).
`EnsembleModel` is that fused model, so any patchlab attack (PGD, MI/DI/TI-FGSM) runs on it unchanged.
`fusion="logits"` fuses the logits instead, Σᵢ αᵢ·zᵢ(x) (Dong et al. 2018, the MI-FGSM paper, found it the
strongest of the three fusions they compared): a confident member's softmax saturates and its gradient through
the fused probability vanishes, its logits' gradient does not. Liu et al.
used an optimisation attack (Adam with a distance penalty); we use L∞-bounded iterative attacks and report the
RMSD they reach.
"""

from __future__ import annotations

import time

import torch
import torch.nn as nn

from patchlab.errors import PatchlabError
from patchlab.registry import Registry
from patchlab.transfer.common import ProgressFn, at_size, model_name, predict, rate
from patchlab.transfer.matrix import attack_key, craft, rmsd, score_targets, target_vector


# How an ensemble combines its members (the registry's unknown-name error has the did-you-mean hint)
FUSIONS: Registry[str] = Registry("ensemble fusion")
FUSIONS.register("probs", "probs", title="average softmax (Liu et al. 2017)")
FUSIONS.register("logits", "logits", title="average logits (Dong et al. 2018)")


def check_fusion(fusion: str) -> str:
    """The canonical fusion name; unknown names are one line naming the choices."""
    return FUSIONS.resolve(fusion)


class EnsembleModel(nn.Module):
    """log(Σᵢ αᵢ·softmax(modelᵢ(x))): its cross-entropy is Liu et al.'s ensemble loss; with fusion="logits",
    Σᵢ αᵢ·modelᵢ(x) (Dong et al. 2018). All members take the same input size (wrap others with AtSize)."""

    def __init__(self, models: list[nn.Module], weights: list[float] | None = None, name: str | None = None,
                 fusion: str = "probs"):
        super().__init__()
        fusion = check_fusion(fusion)
        if not models:
            raise PatchlabError("an ensemble needs at least one model")
        sizes = {int(getattr(m, "input_size", 0)) for m in models}
        if len(sizes) != 1:
            raise PatchlabError(f"ensemble members take different input sizes {sorted(sizes)}; wrap them with AtSize")
        w = torch.tensor(weights if weights is not None else [1.0] * len(models), dtype=torch.float32)
        if len(w) != len(models) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise PatchlabError("ensemble weights: one non-negative weight per model, not all zero")
        self.members = nn.ModuleList(models)
        self.register_buffer("weights", w / w.sum())
        self.fusion = fusion
        self.input_size = sizes.pop()
        self.labels = list(getattr(models[0], "labels", []) or [])
        self.name = name or "+".join(model_name(m) for m in models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fusion == "logits":
            return torch.einsum("k,knc->nc", self.weights, torch.stack([m(x) for m in self.members]))
        logp = torch.stack([m(x).log_softmax(1) for m in self.members])  # (k, N, C)
        return torch.logsumexp(logp + self.weights.log().view(-1, 1, 1), dim=0)


def ensemble_table(models: dict, x: torch.Tensor, y: torch.Tensor, *, attack: str = "mi", eps: float = 16 / 255,
                   target: str | int | None = None, size: int | None = None, include_single: bool = True,
                   batch_size: int = 32, seed: int = 0, fusion: str = "probs", attack_options: dict | None = None,
                   progress: ProgressFn | None = None) -> dict:
    """Liu et al.'s Table 4 layout: one row per held-out model i, crafted on the ensemble of the others and
    scored on every model; with `include_single`, the single-model rows beside them for comparison. Cells hold
    accuracy (untargeted) or target-match rate (targeted: an int class, or "random" per image); every row
    reports its RMSD (0-255 scale). `fusion`: how the ensemble combines its members (see EnsembleModel)."""
    fusion = check_fusion(fusion)
    if len(models) < 2:
        raise PatchlabError("an ensemble table needs at least two models")
    size = int(size or x.shape[-1])
    x, y = x.detach().cpu().float(), y.detach().cpu().long()
    wrapped = {k: at_size(m, size) for k, m in models.items()}
    num_classes = len(getattr(next(iter(wrapped.values())), "labels", []) or []) or int(y.max()) + 1
    tvec = target_vector(target, y, num_classes, seed)
    names = list(wrapped)
    plan = [(f"-{h}", [n for n in names if n != h]) for h in names]
    if include_single:
        plan += [(n, [n]) for n in names]
    start = time.perf_counter()
    clean = {n: rate("accuracy", int((predict(m, x) == y).sum()), len(y)) for n, m in wrapped.items()}
    rows = []
    options = {"seed": seed, **(attack_options or {})}
    for i, (row_name, members) in enumerate(plan):
        src = wrapped[members[0]] if len(members) == 1 else EnsembleModel([wrapped[m] for m in members],
                                                                                  fusion=fusion)
        step = None if progress is None else (
            lambda s, t, m, i=i, row_name=row_name: progress(i * 1000 + int(1000 * s / max(t, 1)),
                                                             1000 * len(plan), {"row": row_name}))
        adv = craft(src, x, y, attack, eps, tvec, batch_size, step, **options)
        held_out = [n for n in names if n not in members]
        rows.append({"row": row_name, "members": members, "held_out": held_out, "rmsd": rmsd(adv, x),
                     "cells": score_targets(wrapped, adv, y, tvec)})
    return {"experiment": "ensemble", "attack": attack_key(attack), "eps": eps, "n": len(y), "size": size,
            "fusion": fusion,
            "mode": "untargeted" if tvec is None else "targeted", "target": None if target is None else str(target),
            "metric": "accuracy" if tvec is None else "target_match_rate", "seed": seed, "models": names,
            "clean": clean, "rows": rows, "seconds": time.perf_counter() - start}


def held_out_summary(table: dict) -> list[dict]:
    """For each model: its score when held out of the ensemble vs. the best single other model's transfer to it
    (lower accuracy / higher match = stronger attack)."""
    key = table["metric"]
    better = min if key == "accuracy" else max
    out = []
    for name in table["models"]:
        ens = next(r for r in table["rows"] if r["row"] == f"-{name}")
        singles = [r for r in table["rows"] if r["members"] == [r["row"]] and r["row"] != name]
        row = {"model": name, "ensemble": ens["cells"][name][key]}
        if singles:
            best = better(singles, key=lambda r: r["cells"][name][key])
            row.update({"best_single": best["cells"][name][key], "best_single_source": best["row"]})
        out.append(row)
    return out
