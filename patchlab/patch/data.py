"""Scene images for patch training and evaluation: a seeded train/held-out split and a preloaded uint8 bank."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from patchlab.errors import PatchlabError


@dataclass
class SceneSplit:
    train: list[Path]
    heldout: list[Path]
    labels: dict[str, int] | None  # file name -> ImageNet label, when the folder is labelled


def folder_labels(folder: str | Path) -> dict[str, int] | None:
    """File name -> label for '<wnid>_<name>.jpg' or class-subfolder layouts; None for unlabelled folders."""
    from patchlab.data import labelled_folder

    try:
        return {it.path.name: it.label for it in labelled_folder(folder)}
    except PatchlabError:
        return None


def list_scene_images(folder: str | Path) -> list[Path]:
    from patchlab.data import IMAGE_SUFFIXES, list_images

    folder = Path(folder)
    if folder.is_dir() and any(p.is_dir() for p in folder.iterdir()):
        files = sorted(p for d in folder.iterdir() if d.is_dir() for p in d.iterdir()
                       if p.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            return files
    return list_images(folder)


def split_scenes(folder: str | Path, holdout: float, split_seed: int = 0,
                 exclude_label: int | None = None) -> SceneSplit:
    """Shuffle the folder's images with `split_seed` and hold out a fraction. Images whose label is
    `exclude_label` (the target class) are left out of both sides."""
    if not 0 <= holdout < 1:
        raise PatchlabError(f"holdout must lie in [0, 1), got {holdout}")
    paths = list_scene_images(folder)
    labels = folder_labels(folder)
    if labels is not None and exclude_label is not None:
        paths = [p for p in paths if labels.get(p.name) != exclude_label]
    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(split_seed)).tolist()
    n_held = int(round(holdout * len(paths)))
    held = sorted(paths[i] for i in order[:n_held])
    train = sorted(paths[i] for i in order[n_held:])
    if not train:
        raise PatchlabError(f"{folder}: no training images left after holding out {holdout:.0%}")
    return SceneSplit(train, held, labels)


def load_scenes(paths: list[Path], size: int, progress: Callable | None = None) -> torch.Tensor:
    """(N, 3, size, size) uint8 bank: each image resized and centre-cropped like the model's eval transform."""
    from patchlab.data import read_image
    from patchlab.models import preprocess

    bank = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    for i, p in enumerate(paths):
        bank[i] = preprocess(read_image(p), size).mul(255).round().byte()
        if progress:
            progress(i + 1, len(paths), {"phase": "loading images"})
    return bank


def to_float(bank: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 scenes -> float [0, 1] on `device`: the uint8 bytes travel (4x less than floats; pinned and
    non-blocking to a GPU), the conversion runs there."""
    from patchlab.models import to_device

    # a float copy, then an in-place division: the same values as uint8 / 255.0, sooner than its mixed-type loop
    return to_device(bank, device).to(torch.float32, copy=True).div_(255.0)
