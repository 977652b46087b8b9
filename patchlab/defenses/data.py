"""The project's one held-out split of the shared images, so that "held-out" means the same images everywhere.

It is the patch trainer's split (`patchlab.patch.data.split_scenes` with its defaults: 40% held out, split seed 0,
the toaster photo left out of both sides), so the shipped toaster patch was never trained on these images and the
defense numbers, the patch numbers and the fine-tuned model's training set never overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from patchlab.errors import PatchlabError

HOLDOUT = 0.4
SPLIT_SEED = 0
SHIPPED_TARGET = 859  # toaster: the shipped patch's target, excluded from both sides as in the patch trainer


@dataclass
class Labelled:
    paths: list[Path]
    labels: torch.Tensor  # (N,) ImageNet indices


def shared_split(images: str | Path, part: str = "heldout", limit: int | None = None) -> Labelled:
    """'heldout' or 'train' images of a labelled folder (`<wnid>_<name>.jpg` or class subfolders)."""
    from patchlab.patch.data import split_scenes

    if part not in ("heldout", "train"):
        raise PatchlabError(f"part must be 'heldout' or 'train', got {part!r}")
    split = split_scenes(images, HOLDOUT, SPLIT_SEED, exclude_label=SHIPPED_TARGET)
    if split.labels is None:
        raise PatchlabError(f"{images}: defenses are scored against labels; use a labelled folder "
                            "(<wnid>_<name>.jpg files or class subfolders)")
    paths = split.heldout if part == "heldout" else split.train
    if limit:
        paths = paths[:int(limit)]
    if not paths:
        raise PatchlabError(f"{images}: no {part} images")
    return Labelled(paths, torch.tensor([split.labels[p.name] for p in paths]))


def load_images(paths: list[Path], size: int, progress=None) -> torch.Tensor:
    """(N, 3, size, size) float images in [0, 1] through the standard eval transform (via the uint8 bank, so
    the pixels equal the patch evaluation's)."""
    from patchlab.patch.data import load_scenes

    return load_scenes(paths, size, progress).float().div_(255)


__all__ = ["HOLDOUT", "SHIPPED_TARGET", "SPLIT_SEED", "Labelled", "load_images", "shared_split"]
