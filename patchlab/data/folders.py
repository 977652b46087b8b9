"""Labelled image folders: ImageNet '<wnid>_<name>.jpg' files or 'class_name/' subfolders."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from patchlab.data.classes import imagenet_classes, lookup_class
from patchlab.data.images import IMAGE_SUFFIXES
from patchlab.errors import PatchlabError


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: int


def labelled_folder(folder: str | Path, class_names: list[str] | tuple[str, ...] | None = None,
                    limit: int | None = None) -> list[LabelledImage]:
    """List (path, label) pairs. Labels come from the wnid prefix, or from subfolder names."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PatchlabError(f"{folder}: no such folder")
    classes = imagenet_classes()
    names = tuple(class_names) if class_names is not None else classes.names
    wnid_to_idx = {w: i for i, w in enumerate(classes.wnids)} if class_names is None else {}
    items: list[LabelledImage] = []
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir())
    if subdirs:
        for d in subdirs:
            label = wnid_to_idx.get(d.name)
            if label is None:
                label = lookup_class(d.name, names)
            items += [LabelledImage(p, label) for p in sorted(d.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    else:
        for p in sorted(folder.iterdir()):
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            wnid = p.stem.split("_", 1)[0]
            if wnid not in wnid_to_idx:
                raise PatchlabError(f"{p}: cannot tell the label; name files '<wnid>_<name>.jpg' or use class_name/ subfolders")
            items.append(LabelledImage(p, wnid_to_idx[wnid]))
    if not items:
        raise PatchlabError(f"{folder}: no labelled images found")
    return items[:limit] if limit else items


def shared_data_dir() -> Path | None:
    """The shared data folder, if present: $PATCHLAB_SHARED_DATA when set (and only it, so a wrong setting reads as
    missing rather than silently finding another copy), else ../shared/data beside the checkout or the cwd."""
    env = os.environ.get("PATCHLAB_SHARED_DATA")
    if env:
        candidates = [Path(env)]
    else:
        here = Path(__file__).resolve()
        candidates = [parent / "shared" / "data" for parent in here.parents] + [Path.cwd().parent / "shared" / "data"]
    for c in candidates:
        if (c / "imagenet-sample").is_dir():
            return c
    return None
