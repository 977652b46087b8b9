"""A patch on disk: an sRGB RGBA PNG (alpha = shape) plus a JSON sidecar with the same stem, `<stem>.patch.json`.

Older versions wrote the sidecar as `<stem>.json`; it is still read when nothing newer is there and the file is not
some other kind of output (a sheet manifest that an older `patchlab print` wrote over it, for instance).
"""

from __future__ import annotations

from pathlib import Path

import torch

from patchlab.artifacts import default_path, identify, load_json, read_json, write_json
from patchlab.errors import PatchlabError

WRITER = "patchlab patch train"


def sidecar_path(path: str | Path) -> Path:
    """Where the sidecar of the patch PNG at `path` is written: `<stem>.patch.json`."""
    return default_path(path, "patch-sidecar")


def find_sidecar(path: str | Path) -> Path | None:
    """The sidecar to read for a patch PNG: `<stem>.patch.json`, else an older version's `<stem>.json` when it is
    a patch sidecar (or a hand-written JSON object patchlab cannot place), else None."""
    new = sidecar_path(path)
    if new.is_file():
        return new
    old = Path(path).with_suffix(".json")
    if old.is_file():
        found = identify(old)
        if found is None or found.kind == "patch-sidecar":
            return old
    return None


def save_patch(path: str | Path, rgb: torch.Tensor, alpha: torch.Tensor, meta: dict | None = None,
               dpi: float | None = None, written_by: str = WRITER) -> Path:
    """Write patch.png (RGBA) and patch.patch.json (meta), each atomically and tagged. rgb (3, H, W), alpha
    (1, H, W), both in [0, 1]. The caller checks the paths first (`patchlab.artifacts.check_outputs`)."""
    from patchlab.data import save_image

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise PatchlabError(f"{path}: a patch is saved as .png")
    rgba = torch.cat([rgb.detach().cpu().clamp(0, 1), alpha.detach().cpu().clamp(0, 1)], 0)
    save_image(rgba, path, dpi=dpi, kind="patch", written_by=written_by)
    if meta is not None:
        write_json(sidecar_path(path), meta, "patch-sidecar", written_by)
    return path


def load_patch(path: str | Path) -> tuple[torch.Tensor, dict]:
    """(rgba (4, H, W) in [0, 1], meta dict). Meta is {} when there is no sidecar."""
    from patchlab.data import read_image_rgba

    path = Path(path)
    rgba = read_image_rgba(path)
    side = find_sidecar(path)
    return rgba, ({} if side is None else load_json(side, "patch sidecar"))


def update_sidecar(path: str | Path, **entries) -> dict:
    """Merge entries into the patch's sidecar; the merged sidecar is written (atomically) as `<stem>.patch.json`.
    An older version's `<stem>.json` is read and left as it was."""
    side = find_sidecar(path)
    meta = read_json(side) if side is not None else {}
    meta = dict(meta) if isinstance(meta, dict) else {}
    writer = meta.get("written_by") if isinstance(meta.get("written_by"), str) else WRITER
    meta.update(entries)
    write_json(sidecar_path(path), meta, "patch-sidecar", writer)
    return meta
