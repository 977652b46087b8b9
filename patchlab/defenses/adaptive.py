"""Input transformations under non-adaptive and adaptive attack, side by side (Athalye, Carlini, Wagner 2018).

Per defense, on the shared held-out images:
  clean     - accuracy of model(transform(x));
  naive     - PGD through the defense with the gradients autograd gives (shattered or missing: JPEG has none,
              bit-depth reduction has zero gradient almost everywhere), then scored through the defense;
  transfer  - PGD on the undefended model, then scored through the defense (the "the transform removes the
              perturbation" claim);
  bpda      - PGD with BPDA (identity on the backward pass) and, for a randomized defense, EOT over `eot` draws
              per step; this is the adaptive attack that breaks them.
A randomized defense is always attacked with EOT (`eot` >= 2 is enforced) and scored on a fresh random draw.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from patchlab.defenses.registry import check_defenses, defense_names, make_transform
from patchlab.errors import PatchlabError
from patchlab.progress import ProgressFn
from patchlab.stats import wilson_interval

INPUT_DEFENSES = defense_names("transforms")


def adaptive_target(model, transform, eot: int = 1):
    """The model an adaptive attacker differentiates: BPDA through `transform`, EOT over its randomness."""
    from patchlab.defenses.transforms import Defended

    if getattr(transform, "randomized", False) and eot < 2:
        raise PatchlabError(f"{transform.name} is randomized: attack it with EOT (eot >= 2), or its robustness "
                            "is overstated")
    return Defended(model, transform, mode="bpda", eot=eot if getattr(transform, "randomized", False) else 1)


def _scored(model, transform, x: torch.Tensor, y: torch.Tensor) -> tuple[float, list[float], int]:
    with torch.no_grad():
        ok = int((model(transform(x)).argmax(1).cpu() == y).sum())
    return ok / len(y), list(wilson_interval(ok, len(y))), ok


def evaluate_transforms(model, images: str | Path, defenses=INPUT_DEFENSES, eps: float = 4 / 255, steps: int = 10,
                        eot: int = 8, limit: int | None = 32, seed: int = 0, batch: int = 16,
                        progress: ProgressFn | None = None) -> dict:
    """Rows per defense: clean_accuracy and robust_accuracy under the naive, transfer and BPDA(+EOT) attacks."""
    from patchlab.attacks import make_attack
    from patchlab.defenses.data import load_images, shared_split
    from patchlab.defenses.transforms import Defended

    start = time.perf_counter()
    defenses = check_defenses(defenses, "transforms")
    if eot < 2 and any(make_transform(d).randomized for d in defenses if d != "none"):
        raise PatchlabError("a randomized defense is in the list: eot must be at least 2")
    data = shared_split(images, "heldout", limit)
    x, y = load_images(data.paths, model.input_size), data.labels

    def pgd(target):
        attack = make_attack("pgd", target, eps=eps, steps=steps, seed=seed, batch_size=batch)
        return attack(x, y).adv.cpu()

    transfer_adv = pgd(model)
    rows, total = [], len(defenses)
    for i, name in enumerate(defenses):
        t0 = time.perf_counter()
        if name == "none":
            t = torch.nn.Identity()
            t.name, t.randomized = "none", False
        else:
            t = make_transform(name)
        row = {"defense": name, **(t.describe() if name != "none" else {}), "randomized": bool(t.randomized)}
        if t.randomized:
            t.generator = torch.Generator().manual_seed(seed + 100 + i)
        row["clean_accuracy"], row["clean_ci95"], _ = _scored(model, t, x, y)
        row["transfer_accuracy"], row["transfer_ci95"], _ = _scored(model, t, transfer_adv, y)
        if name == "none":
            row["naive_accuracy"], row["naive_ci95"] = row["transfer_accuracy"], row["transfer_ci95"]
            row["bpda_accuracy"], row["bpda_ci95"] = row["transfer_accuracy"], row["transfer_ci95"]
        else:
            try:
                naive_adv = pgd(Defended(model, t, mode="plain", eot=eot if t.randomized else 1))
                row["naive_accuracy"], row["naive_ci95"], _ = _scored(model, t, naive_adv, y)
            except RuntimeError:  # no gradient path at all (JPEG): the naive attack cannot even start
                row["naive_accuracy"], row["naive_ci95"] = row["clean_accuracy"], row["clean_ci95"]
                row["naive_note"] = "no gradient through the defense: the naive attack leaves the images unchanged"
            bpda_adv = pgd(adaptive_target(model, t, eot))
            row["bpda_accuracy"], row["bpda_ci95"], _ = _scored(model, t, bpda_adv, y)
            row["eot"] = eot if t.randomized else 1
        row["robust_accuracy"], row["ci95"] = row["bpda_accuracy"], row["bpda_ci95"]
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        if progress:
            progress(i + 1, total, {"defense": name, "bpda": row["bpda_accuracy"]})
    return {"model": model.name, "n": len(x), "eps": eps, "steps": steps, "eot": eot, "seed": seed,
            "attack": "pgd", "images": str(images), "part": "heldout", "rows": rows,
            "seconds": time.perf_counter() - start}


__all__ = ["INPUT_DEFENSES", "adaptive_target", "evaluate_transforms"]
