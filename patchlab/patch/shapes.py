"""Patch shapes as alpha masks at the patch's own resolution."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from patchlab.errors import PatchlabError

SHAPES = ("square", "circle")


def make_mask(shape: str | Path, size: int) -> torch.Tensor:
    """(1, size, size) alpha in [0, 1]: 'square', 'circle' (anti-aliased edge) or a mask image's alpha channel
    (its luminance when it has no alpha), resized to size x size."""
    if size < 4:
        raise PatchlabError(f"patch size must be at least 4 pixels, got {size}")
    s = str(shape)
    if s == "square":
        return torch.ones(1, size, size)
    if s == "circle":
        sub = 4  # supersample the edge
        coords = (torch.arange(size * sub, dtype=torch.float32) + 0.5) / (size * sub) * 2 - 1
        inside = (coords[None, :] ** 2 + coords[:, None] ** 2 <= 1).float()
        return F.avg_pool2d(inside[None, None], sub)[0]
    path = Path(s)
    if not path.exists():
        raise PatchlabError(f"patch shape must be square, circle or a mask image path; '{s}' is neither")
    from patchlab.data import read_image_rgba

    rgba = read_image_rgba(path)
    alpha = rgba[3:4]
    if bool((alpha >= 1).all()):
        alpha = (0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2])[None]
    alpha = F.interpolate(alpha[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
    alpha = alpha.clamp(0, 1)
    if float(alpha.mean()) < 0.01:
        raise PatchlabError(f"{path}: mask is (almost) empty; opaque/white pixels mark the patch")
    return alpha
