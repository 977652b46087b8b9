"""R-covering mask sets (Xiang et al. 2022, PatchCleanser §3.2): every square patch of up to `patch` pixels, at any
position, lies wholly inside at least one mask.

With `k` masks per side the stride is s = ceil((n - p + 1) / k) and the mask side m = p + s - 1, so a patch at any
offset x in [0, n - p] lies inside the mask starting at the last grid position <= x. The last mask is pinned to the
far edge. For n = 224, p = 32 (a 2% patch), k = 6: s = 33, m = 64, 36 masks, 36 * 37 / 2 = 666 mask pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from patchlab.errors import PatchlabError


def patch_side(patch: float | int, image_size: int) -> int:
    """A patch given as an area fraction (0 < patch < 1, of a square image) or as a side in pixels."""
    if isinstance(patch, float) and patch < 1:
        if not patch > 0:
            raise PatchlabError(f"patch area must lie in (0, 1), got {patch}")
        return max(1, math.ceil(math.sqrt(patch) * image_size - 1e-9))
    side = int(patch)
    if side != patch or not 1 <= side <= image_size:
        raise PatchlabError(f"patch side must be a whole number of pixels in [1, {image_size}], got {patch}")
    return side


def _starts(n: int, m: int, s: int) -> list[int]:
    starts = list(range(0, n - m + 1, s))
    if starts[-1] != n - m:
        starts.append(n - m)
    return starts


@dataclass(frozen=True)
class MaskSet:
    """Square masks on an image of side `image_size`; `boxes` are (top, left) corners of `size`-pixel squares."""

    image_size: int
    patch: int      # the largest patch side the set covers
    size: int       # mask side
    stride: int
    boxes: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def pairs(self) -> int:
        """Forward passes for a full certificate: every mask alone and every unordered pair."""
        k = len(self.boxes)
        return k * (k + 1) // 2

    def tensor(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """(K, 1, S, S) bool, True inside the mask."""
        n = self.image_size
        out = torch.zeros((len(self.boxes), 1, n, n), dtype=torch.bool, device=device)
        for i, (t, l) in enumerate(self.boxes):
            out[i, :, t:t + self.size, l:l + self.size] = True
        return out

    def covering(self, top: int, left: int, side: int | None = None) -> list[int]:
        """Indices of the masks that contain the patch with corner (top, left) and side `side` (default `patch`)."""
        side = self.patch if side is None else side
        return [i for i, (t, l) in enumerate(self.boxes)
                if t <= top and top + side <= t + self.size and l <= left and left + side <= l + self.size]

    def to_dict(self) -> dict:
        return {"image_size": self.image_size, "patch": self.patch, "mask_size": self.size, "stride": self.stride,
                "masks": len(self.boxes), "pairs": self.pairs}


def mask_set(image_size: int, patch: float | int = 0.02, k: int = 6) -> MaskSet:
    """The R-covering set of k x k square masks for a patch of `patch` (area fraction or side in pixels)."""
    n = int(image_size)
    p = patch_side(patch, n)
    if int(k) != k or k < 1:
        raise PatchlabError(f"masks per side must be a whole number >= 1, got {k}")
    k = int(k)
    s = max(1, math.ceil((n - p + 1) / k))
    m = min(p + s - 1, n)
    starts = _starts(n, m, s)
    return MaskSet(n, p, m, s, tuple((t, l) for t in starts for l in starts))


__all__ = ["MaskSet", "mask_set", "patch_side"]
