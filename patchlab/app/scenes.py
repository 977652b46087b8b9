"""Scene folders for the Patch studio: a labelled subset of the shared ImageNet sample, or the built-in photos.

Patch training and evaluation take a folder; the page builds a small one per session (symlinks, or PNGs of the
built-in photos named `<wnid>_<name>.png` so their labels are known).
"""

from __future__ import annotations

import os
from pathlib import Path

BUILTIN = "built-in photos"
IMAGENET = "ImageNet sample"


def scene_sources() -> dict[str, int]:
    """Available scene sources and how many images each has."""
    from patchlab.data import list_images, sample_names, shared_data_dir

    sources = {}
    root = shared_data_dir()
    if root is not None and (root / "imagenet-sample").is_dir():
        sources[IMAGENET] = len(list_images(root / "imagenet-sample"))
    sources[BUILTIN] = len(sample_names())
    return sources


def scene_folder(dest: str | Path, source: str, count: int | None = None) -> Path:
    """A folder of `count` scene images from `source` (deterministic: the first ones in sorted order)."""
    from patchlab.data import imagenet_classes, list_images, load_samples, save_image, shared_data_dir
    from patchlab.errors import PatchlabError

    if source not in scene_sources():
        raise PatchlabError(f"scene source '{source}' is not available here ({', '.join(scene_sources())})")
    dest = Path(dest) / f"{source.replace(' ', '-')}-{count or 'all'}"
    if dest.is_dir() and any(dest.iterdir()):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    if source == IMAGENET:
        for path in list_images(shared_data_dir() / "imagenet-sample")[:count]:
            os.symlink(path.resolve(), dest / path.name)
    else:
        wnids = imagenet_classes().wnids
        for sample in load_samples()[:count]:
            save_image(sample.image, dest / f"{wnids[sample.label]}_{sample.name}.png")
    return dest
