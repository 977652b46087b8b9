"""ArUco fiducials (DICT_4X4_50, OpenCV >= 4.7 API): marker images, sub-pixel detection, the page homography fitted
over printed markers, and the quads of a sheet framed by four corner markers (live camera).

Coordinates as in `patchlab.geometry`: page positions in mm from the page's top-left corner, image positions in
OpenCV's pixel-centre convention. A page rendered at `px_per_mm` puts mm position m at pixel m * px_per_mm - 0.5.
Marker corners are always ordered clockwise from the top-left: TL, TR, BR, BL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from patchlab.errors import PatchlabError
from patchlab.geometry import apply_homography, rect_corners

DICTIONARY_ID = cv2.aruco.DICT_4X4_50
MARKER_BITS = 4          # data bits per side
MARKER_BORDER_BITS = 1   # black border, in cells
MARKER_CELLS = MARKER_BITS + 2 * MARKER_BORDER_BITS  # 6 cells across the black square
DETECT_MAX_SIDE = 2400   # larger photos are detected on a downscaled copy, then refined at full resolution


def dictionary() -> cv2.aruco.Dictionary:
    return cv2.aruco.getPredefinedDictionary(DICTIONARY_ID)


def marker_bits(marker_id: int) -> np.ndarray:
    """The (6, 6) bool grid of a marker including its border; True = black."""
    return marker_image(marker_id, MARKER_CELLS) == 0


def marker_image(marker_id: int, px: int) -> np.ndarray:
    """A (px, px) uint8 marker image (black = 0, white = 255), no quiet zone. Add a white margin when placing it."""
    if not 0 <= int(marker_id) < 50:
        raise PatchlabError(f"ArUco DICT_4X4_50 marker ids are 0..49, got {marker_id}")
    if px < MARKER_CELLS:
        raise PatchlabError(f"marker image needs at least {MARKER_CELLS} px, got {px}")
    return cv2.aruco.generateImageMarker(dictionary(), int(marker_id), int(px), borderBits=MARKER_BORDER_BITS)


def _detector(subpix: bool) -> cv2.aruco.ArucoDetector:
    params = cv2.aruco.DetectorParameters()
    params.markerBorderBits = MARKER_BORDER_BITS
    if subpix:
        params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    return cv2.aruco.ArucoDetector(dictionary(), params)


def to_gray_uint8(image: np.ndarray) -> np.ndarray:
    """Gray uint8 from a gray/BGR/BGRA array (uint8, or float in [0, 1])."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating):
            img = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
        else:
            img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
        elif img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        elif img.shape[2] == 1:
            img = img[..., 0]
        else:
            raise PatchlabError(f"expected a gray, BGR or BGRA image, got {img.shape[2]} channels")
    elif img.ndim != 2:
        raise PatchlabError(f"expected an image array, got shape {img.shape}")
    return np.ascontiguousarray(img)


def detect_markers(image: np.ndarray) -> dict[int, np.ndarray]:
    """Detect DICT_4X4_50 markers; return {id: (4, 2) float32 corners TL, TR, BR, BL} with sub-pixel refinement.

    Photos larger than DETECT_MAX_SIDE are searched on a downscaled copy and the corners are refined at full
    resolution. If an id appears more than once, the largest instance is kept.
    """
    gray = to_gray_uint8(image)
    h, w = gray.shape
    scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
    small = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else gray
    corners, ids, _ = _detector(subpix=True).detectMarkers(small)
    found: dict[int, np.ndarray] = {}
    if ids is None:
        return found
    for c, i in zip(corners, ids.ravel()):
        pts = c.reshape(4, 2).astype(np.float32)
        if scale < 1:
            pts = (pts + 0.5) / scale - 0.5
        key = int(i)
        if key not in found or _perimeter(pts) > _perimeter(found[key]):
            found[key] = pts
    if scale < 1:
        for key, pts in found.items():
            found[key] = _refine_full_res(gray, pts)
    return found


def _perimeter(pts: np.ndarray) -> float:
    return float(np.linalg.norm(pts - np.roll(pts, 1, axis=0), axis=1).sum())


def _refine_full_res(gray: np.ndarray, pts: np.ndarray) -> np.ndarray:
    cell = _perimeter(pts) / 4 / MARKER_CELLS
    win = int(max(2, min(12, cell * 0.4)))
    refined = pts.reshape(-1, 1, 2).copy()
    cv2.cornerSubPix(gray, refined, (win, win), (-1, -1),
                     (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 0.01))
    return refined.reshape(4, 2)


def marker_corners_mm(x_mm: float, y_mm: float, size_mm: float) -> np.ndarray:
    """Corners (TL, TR, BR, BL) in page mm of a marker whose black square has its top-left at (x, y)."""
    return rect_corners(x_mm, y_mm, size_mm, size_mm)


@dataclass
class MarkerSpec:
    """One printed marker: its id and the top-left of its black square (page mm), side in mm."""
    id: int
    x_mm: float
    y_mm: float
    size_mm: float

    def corners_mm(self) -> np.ndarray:
        return marker_corners_mm(self.x_mm, self.y_mm, self.size_mm)

    def to_dict(self) -> dict:
        return {"id": self.id, "x_mm": self.x_mm, "y_mm": self.y_mm, "size_mm": self.size_mm}


@dataclass
class PageFit:
    """A homography from page mm to photo pixels, fitted over all detected marker corners."""
    H: np.ndarray                    # 3x3, page mm -> image px
    found_ids: list[int]
    missing_ids: list[int]
    inliers: int
    points: int
    rms_mm: float                    # corner reprojection error, measured on the page in mm
    max_mm: float
    extra_ids: list[int] = field(default_factory=list)  # detected ids that are not part of this page

    def to_page(self, pts_px: np.ndarray) -> np.ndarray:
        return apply_homography(np.linalg.inv(self.H), pts_px)

    def to_image(self, pts_mm: np.ndarray) -> np.ndarray:
        return apply_homography(self.H, pts_mm)

    def px_per_mm_at(self, pt_mm: tuple[float, float]) -> float:
        """Local image scale (px per mm, geometric mean of x and y) at a page point."""
        x, y = pt_mm
        p = self.to_image(np.array([[x, y], [x + 1, y], [x, y + 1]], dtype=np.float64))
        return float(np.sqrt(np.linalg.norm(p[1] - p[0]) * np.linalg.norm(p[2] - p[0])))

    def summary(self) -> dict:
        return {"found_markers": self.found_ids, "missing_markers": self.missing_ids, "inliers": self.inliers,
                "points": self.points, "reprojection_rms_mm": self.rms_mm, "reprojection_max_mm": self.max_mm}


def describe_missing(found: dict[int, np.ndarray] | list[int], expected: list[int]) -> str:
    ids = sorted(found)
    miss = [i for i in expected if i not in ids]
    got = [i for i in ids if i in expected]
    other = [i for i in ids if i not in expected]
    text = f"found markers {got or 'none'} of {sorted(expected)}; missing {miss}"
    if other:
        text += f" (also saw unrelated ids {other})"
    return text


def fit_page(detected: dict[int, np.ndarray], markers: list[MarkerSpec], min_markers: int = 4,
             image_shape: tuple[int, int] | None = None) -> PageFit:
    """Fit page mm -> image px over the corners of every detected page marker (RANSAC), or raise naming the missing."""
    expected = [m.id for m in markers]
    use = [m for m in markers if m.id in detected]
    if len(use) < max(2, min_markers):
        raise PatchlabError(describe_missing(detected, expected) + f"; need at least {max(2, min_markers)} to rectify")
    src = np.concatenate([m.corners_mm() for m in use]).astype(np.float64)
    dst = np.concatenate([np.asarray(detected[m.id], dtype=np.float64) for m in use])
    extent = float(np.ptp(dst, axis=0).max()) if image_shape is None else float(max(image_shape))
    threshold = max(2.0, 0.003 * extent)
    H, mask = cv2.findHomography(src, dst, cv2.RANSAC, threshold, maxIters=2000, confidence=0.999)
    if H is None or mask is None or int(mask.sum()) < 8:
        raise PatchlabError("the detected markers do not form a consistent page (homography fit failed)")
    inl = mask.ravel().astype(bool)
    H, _ = cv2.findHomography(src[inl], dst[inl], 0)  # least squares on the inliers
    err = np.linalg.norm(apply_homography(np.linalg.inv(H), dst[inl]) - src[inl], axis=1)
    return PageFit(H=H, found_ids=[m.id for m in use], missing_ids=[i for i in expected if i not in detected],
                   inliers=int(inl.sum()), points=len(src), rms_mm=float(np.sqrt((err ** 2).mean())),
                   max_mm=float(err.max()), extra_ids=sorted(i for i in detected if i not in expected))


def order_sheet_markers(markers: dict[int, np.ndarray], ids: list[int] | None = None) -> list[int] | None:
    """Four marker ids ordered TL, TR, BR, BL around the sheet: the lowest id is TL, the rest follow clockwise."""
    use = sorted(ids if ids is not None else markers)[:4] if ids is None else list(ids)
    if len(use) < 4 or any(i not in markers for i in use):
        return None
    centres = {i: np.asarray(markers[i], np.float64).mean(0) for i in use}
    middle = np.mean(list(centres.values()), axis=0)
    angle = {i: np.arctan2(*(centres[i] - middle)[::-1]) for i in use}
    start = angle[use[0]]
    return sorted(use, key=lambda i: (angle[i] - start) % (2 * np.pi))  # image y is down: increasing = clockwise


def sheet_quads(markers: dict[int, np.ndarray], ids: list[int] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(inner, outer) quads of a sheet framed by four corner markers: inner = the corners nearest the sheet centre
    (the patch area), outer = the farthest ones (the whole marked region). None without four markers."""
    order = order_sheet_markers(markers, ids)
    if order is None:
        return None
    corners = [np.asarray(markers[i], np.float64) for i in order]
    middle = np.mean([c.mean(0) for c in corners], axis=0)
    inner = np.array([c[np.argmin(np.linalg.norm(c - middle, axis=1))] for c in corners])
    outer = np.array([c[np.argmax(np.linalg.norm(c - middle, axis=1))] for c in corners])
    return inner, outer
