"""Transfer matrices: adversarial examples crafted on each source model, scored on each target model.

    m = transfer_matrix({"a": net_a, "b": net_b}, {"a": net_a, "b": net_b, "c": net_c}, x, y, attack="pgd", eps=0.3)
    m["cells"]   # one row per (source, target): accuracy (untargeted) or target-match rate (targeted), with ci95

All models see the images in one pixel space (`size`); models with another native size resize inside
(`AtSize`), so a cell's source and target agree on what ε means. A source→source cell is the white-box attack
itself. Targets may be any callable returning scores (e.g. scikit-learn models through `SklearnModel`); sources
must be differentiable torch models.
"""

from __future__ import annotations

import time

import torch

from patchlab.errors import PatchlabError
from patchlab.transfer.common import ProgressFn, at_size, model_name, predict, rate

ATTACK_NAMES = {"fgsm": "fgsm", "pgd": "pgd", "mi": "mifgsm", "di": "difgsm", "ti": "tifgsm", "bim": "bim"}


def attack_key(name: str) -> str:
    """The issue's short names (mi, di, ti) or any patchlab.attacks name."""
    return ATTACK_NAMES.get(str(name).lower(), str(name).lower())


def random_targets(labels: torch.Tensor, num_classes: int, seed: int = 0) -> torch.Tensor:
    """A random target class per image, never its true class (Liu et al.'s targeted protocol)."""
    gen = torch.Generator().manual_seed(int(seed))
    shift = torch.randint(1, num_classes, labels.shape, generator=gen)
    return (labels.cpu() + shift) % num_classes


def target_vector(target: int | str | None, y: torch.Tensor, num_classes: int, seed: int = 0) -> torch.Tensor | None:
    """None (untargeted), one class for every image, or "random": a random wrong class per image."""
    if target is None:
        return None
    if str(target) == "random":
        return random_targets(y, num_classes, seed)
    return torch.full_like(y, int(target))


def craft(source, x: torch.Tensor, y: torch.Tensor, attack: str, eps: float, target: torch.Tensor | None = None,
          batch_size: int = 64, progress: ProgressFn | None = None, **options):
    """Adversarial examples on `source` (an AttackResult, computed in batches)."""
    from patchlab.attacks import make_attack

    kwargs = dict(options)
    if target is not None:
        kwargs["target"] = target
    atk = make_attack(attack_key(attack), source, eps=eps, **kwargs)
    advs, n = [], len(x)
    for i in range(0, n, batch_size):
        if target is not None:
            atk.target = target[i:i + batch_size]
        advs.append(atk(x[i:i + batch_size], y[i:i + batch_size]).adv.detach().cpu())
        if progress is not None:
            progress(min(i + batch_size, n), n, {})
    return torch.cat(advs) if advs else x.clone()


def rmsd(adv: torch.Tensor, x: torch.Tensor) -> float:
    """Root mean square deviation on the 0-255 scale, averaged over images (Liu et al.'s distortion measure)."""
    d = ((adv - x) * 255).flatten(1)
    return float(d.pow(2).mean(1).sqrt().mean())


def score_targets(targets: dict, adv: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> dict:
    """Per target: accuracy on `adv` (untargeted) or the rate of predictions equal to `target` (targeted)."""
    out = {}
    n = len(y)
    for name, model in targets.items():
        pred = predict(model, adv)
        if target is None:
            out[name] = rate("accuracy", int((pred == y).sum()), n)
        else:
            out[name] = rate("target_match_rate", int((pred == target).sum()), n)
    return out


def transfer_matrix(sources: dict, targets: dict, x: torch.Tensor, y: torch.Tensor, *, attack: str = "pgd",
                    eps: float = 0.3, target: int | str | None = None, size: int | None = None,
                    num_classes: int | None = None, batch_size: int = 64, seed: int = 0,
                    attack_options: dict | None = None, progress: ProgressFn | None = None) -> dict:
    """Craft on each source, score on each target. `target` None: untargeted, cells hold target accuracy;
    an int: every image aimed at that class; "random": a random wrong class per image; cells then hold the
    target-match rate. Returns a JSON-ready dict (cells, clean accuracy per target, RMSD per source)."""
    if not sources or not targets:
        raise PatchlabError("transfer matrix: give at least one source and one target")
    size = int(size or x.shape[-1])
    if x.shape[-1] != size:
        raise PatchlabError(f"images are {x.shape[-1]} px but the matrix works at size={size}")
    x, y = x.detach().cpu().float(), y.detach().cpu().long()
    start = time.perf_counter()
    srcs = {k: at_size(m, size) for k, m in sources.items()}
    tgts = {k: at_size(m, size) for k, m in targets.items()}
    k = num_classes or len(getattr(next(iter(srcs.values())), "labels", []) or []) or int(y.max()) + 1
    tvec = target_vector(target, y, k, seed)
    clean = {name: rate("accuracy", int((predict(m, x) == y).sum()), len(y)) for name, m in tgts.items()}
    cells, per_source = [], {}
    options = {"seed": seed, **(attack_options or {})}
    for i, (sname, src) in enumerate(srcs.items()):
        step = None if progress is None else (
            lambda s, t, m, i=i, sname=sname: progress(i * 1000 + int(1000 * s / max(t, 1)), 1000 * len(srcs),
                                                       {"source": sname}))
        adv = craft(src, x, y, attack, eps, tvec, batch_size, step, **options)
        per_source[sname] = {"rmsd": rmsd(adv, x), "linf": float((adv - x).abs().flatten(1).amax(1).max())}
        for tname, res in score_targets(tgts, adv, y, tvec).items():
            cells.append({"source": sname, "target": tname, **res})
    return {"experiment": "matrix", "attack": attack_key(attack), "eps": eps, "n": len(y), "size": size,
            "mode": "untargeted" if tvec is None else ("targeted-random" if str(target) == "random" else "targeted"),
            "target": None if target is None else str(target), "seed": seed,
            "metric": "accuracy" if tvec is None else "target_match_rate",
            "sources": list(srcs), "targets": list(tgts), "clean": clean, "per_source": per_source,
            "cells": cells, "seconds": time.perf_counter() - start,
            "models": {name: model_name(m) for name, m in {**sources, **targets}.items()}}


def as_grid(result: dict) -> tuple[list[str], list[str], list[list[float]]]:
    """(rows, columns, values) of a matrix result's main metric, for tables and heatmaps."""
    key = result["metric"]
    rows, cols = result["sources"], result["targets"]
    lookup = {(c["source"], c["target"]): c[key] for c in result["cells"]}
    return rows, cols, [[lookup[(r, c)] for c in cols] for r in rows]
