"""Plane geometry shared by print-and-photo and the live camera: rectangles and quads, homographies, warps.

Quads are (4, 2) float arrays ordered TL, TR, BR, BL. Image positions use OpenCV's convention (pixel centres at
integer coordinates), so the outer edges of a w x h image run from (-0.5, -0.5) to (w - 0.5, h - 0.5) (`edge_quad`).
Page positions are in mm from the page's top-left corner, x right, y down.
"""

from __future__ import annotations

import cv2
import numpy as np

Rect = tuple[float, float, float, float]  # x, y, w, h


def rect_corners(x: float, y: float, w: float, h: float) -> np.ndarray:
    """The corners TL, TR, BR, BL of an axis-aligned rectangle."""
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float64)


def edge_quad(w: float, h: float) -> np.ndarray:
    """The outer edges of a w x h pixel image in pixel-centre coordinates."""
    return rect_corners(-0.5, -0.5, w, h)


def apply_homography(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Map (N, 2) points through a 3x3 homography."""
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    return cv2.perspectiveTransform(pts.reshape(-1, 1, 2), np.asarray(H, dtype=np.float64)).reshape(-1, 2)


def quad_homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The homography taking the four corners `src` onto `dst`."""
    return cv2.getPerspectiveTransform(np.asarray(src, np.float32), np.asarray(dst, np.float32)).astype(np.float64)


def quad_area(quad: np.ndarray) -> float:
    """Area of a simple polygon (shoelace formula)."""
    q = np.asarray(quad, np.float64)
    x, y = q[:, 0], q[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def apparent_size(quad: np.ndarray | None) -> float | None:
    """Apparent size in pixels: the side of a square with the quad's area."""
    return None if quad is None else float(np.sqrt(quad_area(quad)))


def fit_in_unit_square(w: int, h: int) -> np.ndarray:
    """Corners (TL, TR, BR, BL) of a w:h rectangle fitted and centred in the unit square (keeps aspect)."""
    if w >= h:
        a = h / w
        return np.array([[0, (1 - a) / 2], [1, (1 - a) / 2], [1, (1 + a) / 2], [0, (1 + a) / 2]], np.float64)
    a = w / h
    return np.array([[(1 - a) / 2, 0], [(1 + a) / 2, 0], [(1 + a) / 2, 1], [(1 - a) / 2, 1]], np.float64)


def quad_in_quad(outer: np.ndarray, w: int, h: int, scale: float = 1.0) -> np.ndarray:
    """The quad a w x h image occupies when fitted (aspect kept) into `outer`, scaled by `scale` about its centre."""
    rect = 0.5 + (fit_in_unit_square(w, h) - 0.5) * float(scale)
    return apply_homography(quad_homography(rect_corners(0, 0, 1, 1), outer), rect)


def rect_to_image_homography(H_mm_to_img: np.ndarray, rect_mm: Rect, out_w: int, out_h: int) -> np.ndarray:
    """Homography from output pixels of a (out_w x out_h) crop of page rect (x, y, w, h) mm to image pixels."""
    x, y, w, h = rect_mm
    sx, sy = w / out_w, h / out_h
    out_to_mm = np.array([[sx, 0, x + 0.5 * sx], [0, sy, y + 0.5 * sy], [0, 0, 1]], dtype=np.float64)
    return np.asarray(H_mm_to_img, dtype=np.float64) @ out_to_mm


def warp_rect(image: np.ndarray, H_mm_to_img: np.ndarray, rect_mm: Rect, out_w: int, out_h: int,
              supersample: bool = True) -> np.ndarray:
    """Crop page rect (x, y, w, h) mm from a photo into an (out_h, out_w) image.

    With `supersample`, the rect is warped at the photo's own resolution first and then area-downsampled,
    which avoids aliasing when the photo has more pixels than the output.
    """
    H = np.asarray(H_mm_to_img, dtype=np.float64)
    corners = apply_homography(H, rect_corners(*rect_mm))
    native_w = max(np.linalg.norm(corners[1] - corners[0]), np.linalg.norm(corners[2] - corners[3]))
    native_h = max(np.linalg.norm(corners[3] - corners[0]), np.linalg.norm(corners[2] - corners[1]))
    factor = max(native_w / out_w, native_h / out_h) if supersample else 1.0
    factor = min(max(1.0, factor), 8.0)
    mid_w, mid_h = int(round(out_w * factor)), int(round(out_h * factor))
    M = rect_to_image_homography(H, rect_mm, mid_w, mid_h)
    out = cv2.warpPerspective(image, M, (mid_w, mid_h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)
    if (mid_w, mid_h) != (out_w, out_h):
        out = cv2.resize(out, (out_w, out_h), interpolation=cv2.INTER_AREA)
    return out


def rectify_page(image: np.ndarray, H_mm_to_img: np.ndarray, page_mm: tuple[float, float], px_per_mm: float,
                 border_mm: float = 0.0) -> np.ndarray:
    """The whole page (plus an optional border around it) as a fronto-parallel image at px_per_mm."""
    w_mm, h_mm = page_mm
    rect = (-border_mm, -border_mm, w_mm + 2 * border_mm, h_mm + 2 * border_mm)
    return warp_rect(image, H_mm_to_img, rect, int(round(rect[2] * px_per_mm)), int(round(rect[3] * px_per_mm)),
                     supersample=False)
