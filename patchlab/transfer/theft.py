"""Theft++: attack the victim through a stolen copy, next to a white-box attack on the victim and transfer from an
independently trained model (and same-norm random noise as the floor).

    rows = attack_through_copies(victim, {"stolen copy": copy, "independent model": other}, x, y, eps=0.3)

Each source crafts adversarial examples with the attacker's true labels; the victim's answers on them arrive
through a counting oracle. `success_rate` counts the images the victim classified correctly before the attack
that it gets wrong after; `misclassification_rate` counts all wrong answers.
"""

from __future__ import annotations

import time

import torch

from patchlab.transfer.common import ProgressFn, model_name, predict, rate, scaled_progress
from patchlab.transfer.matrix import attack_key, craft, rmsd
from patchlab.transfer.oracle import Oracle
from patchlab.transfer.substitute import sign_noise


def attack_through_copies(victim, copies: dict, x: torch.Tensor, y: torch.Tensor, *, attack: str = "pgd",
                          eps: float = 0.3, seed: int = 0, attack_options: dict | None = None,
                          batch_size: int = 64, white_box: bool = True, noise: bool = True,
                          progress: ProgressFn | None = None) -> dict:
    """One row per source ("white-box" = the victim itself, then each copy, then "noise")."""
    start = time.perf_counter()
    x, y = x.detach().cpu().float(), y.detach().cpu().long()
    oracle = Oracle(victim, output="label")
    clean = predict(victim, x)
    correct = clean == y
    sources = ({"white-box": victim} if white_box else {}) | dict(copies)
    options = {"seed": seed, **(attack_options or {})}
    rows = []
    total = len(sources) + int(noise)
    for i, (name, src) in enumerate(sources.items()):
        adv = craft(src, x, y, attack, eps, None, batch_size, scaled_progress(progress, i, 1, total), **options)
        rows.append(_row(name, model_name(src), oracle(adv).labels, y, correct, adv, x))
    if noise:
        adv = sign_noise(x, eps, seed + 1)
        rows.append(_row("noise", "random sign noise", oracle(adv).labels, y, correct, adv, x))
    if progress is not None:
        progress(total, total, {})
    return {"experiment": "theft++", "victim": model_name(victim), "attack": attack_key(attack), "eps": eps,
            "n": len(y), "seed": seed, "victim_clean_accuracy": float(correct.float().mean()),
            "attack_queries": oracle.queries, "rows": rows, "seconds": time.perf_counter() - start}


def _row(name: str, model: str, pred: torch.Tensor, y: torch.Tensor, correct: torch.Tensor, adv, x) -> dict:
    wrong = pred != y
    return {"source": name, "model": model, **rate("misclassification_rate", int(wrong.sum()), len(y)),
            **rate("success_rate", int((wrong & correct).sum()), int(correct.sum())), "rmsd": rmsd(adv, x)}


def copy_agreement(copy, victim, x: torch.Tensor) -> float:
    """Fraction of images on which the copy and the victim give the same top-1 class."""
    return float((predict(copy, x) == predict(victim, x)).float().mean())
