"""Virtual patch: warp an RGBA patch onto a live frame, perspective-correct, onto ArUco marker quads or a fixed place.

Quads (see `patchlab.geometry`) describe the patch's outer edges: a patch of w x h pixels maps its edge quad
(-0.5, -0.5)..(w - 0.5, h - 0.5) onto the quad.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from patchlab.errors import PatchlabError
from patchlab.geometry import edge_quad, quad_area, quad_homography, quad_in_quad
from patchlab.physical.markers import sheet_quads


@dataclass
class Patch:
    """A patch as BGR uint8 plus alpha float32 in [0, 1], ready to composite onto BGR frames."""

    bgr: np.ndarray          # (h, w, 3) uint8
    alpha: np.ndarray        # (h, w) float32 in [0, 1]
    target: str | None = None
    target_index: int | None = None
    name: str = "patch"

    @property
    def size(self) -> tuple[int, int]:
        return self.bgr.shape[1], self.bgr.shape[0]

    @classmethod
    def from_rgba(cls, rgba: np.ndarray, name: str = "patch", target: str | None = None,
                  target_index: int | None = None) -> "Patch":
        """From an (h, w, 4) uint8 RGBA array (or (h, w, 3) RGB, fully opaque)."""
        arr = np.asarray(rgba)
        if arr.dtype != np.uint8:
            arr = (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise PatchlabError(f"{name}: a patch must be an RGB or RGBA image, got shape {arr.shape}")
        alpha = arr[..., 3].astype(np.float32) / 255.0 if arr.shape[2] == 4 else np.ones(arr.shape[:2], np.float32)
        bgr = np.ascontiguousarray(arr[..., 2::-1])
        return cls(bgr, alpha, target, target_index, name)

    def rgba(self) -> np.ndarray:
        return np.dstack([self.bgr[..., ::-1], np.round(self.alpha * 255).astype(np.uint8)])


def load_patch(path: str | Path) -> Patch:
    """Read a patch PNG (alpha = shape) and its `<stem>.patch.json` sidecar (target index/name) when present."""
    from patchlab.data import to_uint8_hwc
    from patchlab.patch.io import load_patch as read_patch_files

    rgba, meta = read_patch_files(path)
    raw = meta.get("target")
    name = meta.get("target_name") or meta.get("target_label")
    index = meta.get("target_index")
    if isinstance(raw, dict):
        index, name = raw.get("index", index), raw.get("name", name)
    elif isinstance(raw, int) and not isinstance(raw, bool):
        index = raw if index is None else index
    elif isinstance(raw, str) and raw.strip():
        name = name or raw
    return Patch.from_rgba(to_uint8_hwc(rgba), name=Path(path).stem, target=name,
                           target_index=int(index) if index is not None else None)


def composite_onto_quad(frame: np.ndarray, patch: Patch, quad: np.ndarray) -> np.ndarray:
    """Alpha-composite `patch` onto `frame` (BGR uint8, in place) so its outer edges land on `quad`. Returns frame."""
    quad = np.asarray(quad, np.float64)
    fh, fw = frame.shape[:2]
    x0, y0 = np.floor(quad.min(0)).astype(int) - 1
    x1, y1 = np.ceil(quad.max(0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, fw), min(y1, fh)
    if x1 <= x0 or y1 <= y0:
        return frame
    size = (x1 - x0, y1 - y0)
    bgr, alpha = patch.bgr, patch.alpha
    w, h = patch.size
    # area-average the patch first when it shrinks a lot, as a camera sensor would
    shrink = max(w, h) / max(1.0, float(np.sqrt(quad_area(quad))))
    if shrink > 2:
        f = 1.0 / (shrink / 1.5)
        w, h = max(1, round(w * f)), max(1, round(h * f))
        bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_AREA)
    H = quad_homography(edge_quad(w, h), quad - [x0, y0])
    warped = cv2.warpPerspective(bgr, H, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    a = cv2.warpPerspective(alpha, H, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
    roi = frame[y0:y1, x0:x1]
    roi[:] = (roi.astype(np.float32) * (1 - a) + warped.astype(np.float32) * a + 0.5).astype(np.uint8)
    return frame


# ---- where the patch goes -----------------------------------------------------------------------------------------

@dataclass
class Anchor:
    """Where a virtual patch goes: `sheet` (between four corner markers), `marker` (onto one marker) or `fixed`."""

    kind: str = "sheet"
    marker_id: int | None = None       # marker: which id (None = the lowest detected)
    scale: float = 1.0                  # relative to the anchor quad, about its centre
    centre: tuple[float, float] = (0.5, 0.5)  # fixed: frame fractions
    size: float = 0.4                   # fixed: side as a fraction of the frame's short side

    @classmethod
    def parse(cls, text: str, scale: float = 1.0) -> "Anchor":
        """'sheet', 'marker', 'marker:7', 'fixed' or 'fixed:cx,cy,size' (fractions of the frame)."""
        kind, _, arg = str(text).partition(":")
        kind = kind.strip().lower()
        try:
            if kind == "sheet" and not arg:
                return cls("sheet", scale=scale)
            if kind == "marker":
                return cls("marker", marker_id=int(arg) if arg else None, scale=scale)
            if kind == "fixed":
                if not arg:
                    return cls("fixed", scale=scale)
                cx, cy, size = (float(v) for v in arg.split(","))
                return cls("fixed", centre=(cx, cy), size=size, scale=scale)
        except ValueError:
            pass
        raise PatchlabError(f"anchor={text}: expected sheet, marker, marker:<id>, fixed or fixed:cx,cy,size")

    def needs_markers(self) -> bool:
        return self.kind in ("sheet", "marker")

    def region(self, markers: dict[int, np.ndarray], frame_shape: tuple[int, ...]) -> np.ndarray | None:
        """The anchor quad in this frame (before fitting the patch's aspect), or None when its markers are absent."""
        if self.kind == "sheet":
            quads = sheet_quads(markers)
            return None if quads is None else quads[0]
        if self.kind == "marker":
            if not markers:
                return None
            key = self.marker_id if self.marker_id is not None else min(markers)
            return None if key not in markers else np.asarray(markers[key], np.float64)
        h, w = frame_shape[:2]
        side = self.size * min(h, w)
        cx, cy = self.centre[0] * w - 0.5, self.centre[1] * h - 0.5
        s = side / 2
        return np.array([[cx - s, cy - s], [cx + s, cy - s], [cx + s, cy + s], [cx - s, cy + s]], np.float64)


class VirtualPatch:
    """A patch plus its anchor; `apply(frame, markers)` pastes it and returns the quad it now covers."""

    def __init__(self, patch: Patch, anchor: Anchor | None = None):
        self.patch, self.anchor = patch, anchor or Anchor()

    def quad(self, markers: dict[int, np.ndarray], frame_shape: tuple[int, ...]) -> np.ndarray | None:
        region = self.anchor.region(markers, frame_shape)
        if region is None:
            return None
        w, h = self.patch.size
        return quad_in_quad(region, w, h, self.anchor.scale)

    def apply(self, frame: np.ndarray, markers: dict[int, np.ndarray]) -> np.ndarray | None:
        quad = self.quad(markers, frame.shape)
        if quad is not None:
            composite_onto_quad(frame, self.patch, quad)
        return quad
