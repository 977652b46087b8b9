"""A patch on disk: an sRGB RGBA PNG (alpha = shape) plus a JSON sidecar with the same stem."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from patchlab.errors import PatchlabError


def sidecar_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def save_patch(path: str | Path, rgb: torch.Tensor, alpha: torch.Tensor, meta: dict | None = None,
               dpi: float | None = None) -> Path:
    """Write patch.png (RGBA) and patch.json (meta). rgb (3, H, W), alpha (1, H, W), both in [0, 1]."""
    from patchlab.data import save_image

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise PatchlabError(f"{path}: a patch is saved as .png")
    rgba = torch.cat([rgb.detach().cpu().clamp(0, 1), alpha.detach().cpu().clamp(0, 1)], 0)
    save_image(rgba, path, dpi=dpi)
    if meta is not None:
        sidecar_path(path).write_text(json.dumps(meta, indent=2, default=float) + "\n")
    return path


def load_patch(path: str | Path) -> tuple[torch.Tensor, dict]:
    """(rgba (4, H, W) in [0, 1], meta dict). Meta is {} when there is no sidecar."""
    from patchlab.data import read_image_rgba

    path = Path(path)
    rgba = read_image_rgba(path)
    side = sidecar_path(path)
    meta: dict = {}
    if side.is_file():
        try:
            meta = json.loads(side.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PatchlabError(f"{side}: patch sidecar is not valid JSON ({exc})") from None
    return rgba, meta


def update_sidecar(path: str | Path, **entries) -> dict:
    """Merge entries into the patch's sidecar (creating it if needed)."""
    side = sidecar_path(path)
    meta = json.loads(side.read_text()) if side.is_file() else {}
    meta.update(entries)
    side.write_text(json.dumps(meta, indent=2, default=float) + "\n")
    return meta
