"""A printed page photographed: a rendered page under a random camera view and capture degradations.

`simulate_photo(page_rgb, page_mm, seed)` takes a page raster (from `layout.render_page` or a PDF rendered with
`layout.render_pdf_page`) and returns a photo with the ground-truth homography from page mm to photo pixels.
The chain, in order: optional printer colour transform and print scaling -> paper on a textured table under a
random perspective view (tilt up to 35 degrees) -> uneven lighting -> white-balance shift -> blur -> noise ->
8-bit quantisation -> JPEG.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import cv2
import numpy as np

from patchlab.errors import PatchlabError
from patchlab.geometry import apply_homography, rect_corners
from patchlab.physical.layout import Page, render_page
from patchlab.registry import Registry


@dataclass
class PhotoConditions:
    """Ranges the random photo is drawn from (each draw picks one value per range)."""
    tilt_deg: tuple[float, float] = (0.0, 35.0)          # angle between page normal and camera axis
    roll_deg: tuple[float, float] = (-180.0, 180.0)      # in-plane rotation of the page
    megapixels: tuple[float, float] = (2.0, 6.0)
    fill: tuple[float, float] = (0.55, 0.9)              # page bounding box / frame size
    distance_diag: tuple[float, float] = (1.3, 2.5)      # camera distance in page diagonals (perspective strength)
    light_gradient: tuple[float, float] = (0.0, 0.35)    # darkest/brightest across the frame: 1 - value
    exposure: tuple[float, float] = (0.85, 1.05)
    white_balance: float = 0.08                          # std of log per-channel gains
    blur_sigma_px: tuple[float, float] = (0.0, 0.8)
    noise_std: tuple[float, float] = (0.002, 0.012)
    jpeg_quality: tuple[int, int] = (70, 70)
    print_scale: float = 1.0                             # <1 simulates a driver's "fit to page" shrink
    paper_white: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SimulatedPhoto:
    image: np.ndarray          # H x W x 3 uint8 RGB (decoded JPEG)
    jpeg: bytes
    H: np.ndarray              # page-content mm -> photo px (what the markers define)
    H_paper: np.ndarray        # physical paper mm -> photo px (differs from H when print_scale != 1)
    params: dict = field(default_factory=dict)

    @property
    def bgr(self) -> np.ndarray:
        return self.image[..., ::-1].copy()


def _rotation(tilt: float, tilt_axis: float, roll: float) -> np.ndarray:
    cz, sz = math.cos(roll), math.sin(roll)
    Rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    a = np.array([math.cos(tilt_axis), math.sin(tilt_axis), 0.0])
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    Rt = np.eye(3) + math.sin(tilt) * K + (1 - math.cos(tilt)) * K @ K
    return Rt @ Rz


def random_view(page_mm: tuple[float, float], rng: np.random.Generator, cond: PhotoConditions) -> tuple[np.ndarray, tuple[int, int], dict]:
    """A homography paper mm -> photo px for a random camera pose, and the photo size (w, h)."""
    w_mm, h_mm = page_mm
    mp = rng.uniform(*cond.megapixels) * 1e6
    landscape = rng.random() < 0.5
    W = int(round(math.sqrt(mp * 4 / 3)))
    Hh = int(round(W * 3 / 4))
    if not landscape:
        W, Hh = Hh, W
    tilt = math.radians(rng.uniform(*cond.tilt_deg))
    tilt_axis = rng.uniform(0, 2 * math.pi)
    roll = math.radians(rng.uniform(*cond.roll_deg))
    R = _rotation(tilt, tilt_axis, roll)
    diag = math.hypot(w_mm, h_mm)
    dist = rng.uniform(*cond.distance_diag) * diag
    f = 1.0  # focal length is absorbed by the final scale-to-frame step
    centre = np.array([[1, 0, -w_mm / 2], [0, 1, -h_mm / 2], [0, 0, 1]])
    P = np.diag([f, f, 1.0]) @ np.column_stack([R[:, 0], R[:, 1], np.array([0, 0, dist])]) @ centre
    corners = apply_homography(P, rect_corners(0, 0, w_mm, h_mm))
    lo, hi = corners.min(0), corners.max(0)
    fill = rng.uniform(*cond.fill)
    scale = fill * min(W / (hi[0] - lo[0]), Hh / (hi[1] - lo[1]))
    size = (hi - lo) * scale
    off_x = rng.uniform(0, W - size[0])
    off_y = rng.uniform(0, Hh - size[1])
    S = np.array([[scale, 0, off_x - lo[0] * scale], [0, scale, off_y - lo[1] * scale], [0, 0, 1]])
    H = S @ P
    params = {"width": W, "height": Hh, "tilt_deg": math.degrees(tilt), "tilt_axis_deg": math.degrees(tilt_axis),
              "roll_deg": math.degrees(roll), "distance_mm": dist, "fill": fill}
    return H / H[2, 2], (W, Hh), params


def _background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A table-like textured background (uint8 RGB), darker than paper so the sheet edges show."""
    w, h = size
    base = rng.uniform(0.15, 0.55, size=3)
    small = 1 + 0.03 * rng.standard_normal((max(2, h // 48), max(2, w // 48)), dtype=np.float32)
    texture = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.merge([cv2.convertScaleAbs(texture, alpha=255.0 * float(c)) for c in base])


def _polygon_mask(corners_px: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Anti-aliased float mask of a convex polygon (OpenCV pixel-centre coordinates)."""
    w, h = size
    mask = np.zeros((h, w), np.uint8)
    pts = np.round(corners_px * 16).astype(np.int32)  # 4 fractional bits
    cv2.fillConvexPoly(mask, pts, 255, lineType=cv2.LINE_AA, shift=4)
    return mask.astype(np.float32) / 255.0


def simulate_photo(page_rgb: np.ndarray, page_mm: tuple[float, float], seed: int | np.random.Generator | None = None,
                   conditions: PhotoConditions | None = None,
                   printer: Callable[[np.ndarray], np.ndarray] | None = None) -> SimulatedPhoto:
    """Photograph a page raster (H x W x 3 uint8 RGB covering page_mm) under random conditions.

    `printer` maps float RGB (N, 3) in [0, 1] to printed-and-seen RGB (a synthetic printer->camera colour
    transform); it is applied to the page before the view.
    """
    cond = conditions or PhotoConditions()
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    page = np.asarray(page_rgb)
    if page.dtype != np.uint8 or page.ndim != 3 or page.shape[2] != 3:
        raise PatchlabError("simulate_photo needs an H x W x 3 uint8 RGB page raster")
    w_mm, h_mm = page_mm
    ph, pw = page.shape[:2]
    sx, sy = pw / w_mm, ph / h_mm
    if abs(sx - sy) / sx > 0.01:
        raise PatchlabError(f"page raster {pw}x{ph} does not match the page aspect {w_mm}x{h_mm} mm")

    H_paper, (W, Hh), params = random_view(page_mm, rng, cond)
    # content mm -> paper mm: the printer scales the content about the page centre
    s = cond.print_scale
    C = np.array([[s, 0, (1 - s) * w_mm / 2], [0, s, (1 - s) * h_mm / 2], [0, 0, 1]])
    H_content = H_paper @ C

    page8 = page
    if printer is not None or cond.paper_white != 1.0:
        page_f = page.astype(np.float32) / 255.0
        if printer is not None:
            page_f = np.asarray(printer(page_f.reshape(-1, 3)), dtype=np.float32).reshape(page_f.shape)
        page8 = cv2.convertScaleAbs(page_f, alpha=255.0 * cond.paper_white)
    paper8 = int(round(255 * cond.paper_white))
    # the page raster shows the content; place it on the paper (white margin where the print shrank)
    content_px_to_mm = np.array([[1 / sx, 0, 0.5 / sx], [0, 1 / sy, 0.5 / sy], [0, 0, 1]])
    # avoid aliasing: bring the raster close to the photo's resolution before the perspective warp
    photo_px_per_mm = _max_scale(H_content, page_mm)
    if sx > 1.5 * photo_px_per_mm:
        f = 1.5 * photo_px_per_mm / sx
        page8 = cv2.resize(page8, (max(2, round(pw * f)), max(2, round(ph * f))), interpolation=cv2.INTER_AREA)
        ph2, pw2 = page8.shape[:2]
        content_px_to_mm = np.array([[w_mm / pw2, 0, 0.5 * w_mm / pw2], [0, h_mm / ph2, 0.5 * h_mm / ph2], [0, 0, 1]])
    M = H_content @ content_px_to_mm
    bg = _background(rng, (W, Hh))
    paper_mask = _polygon_mask(apply_homography(H_paper, rect_corners(0, 0, w_mm, h_mm)), (W, Hh))
    content = cv2.warpPerspective(page8, M, (W, Hh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                  borderValue=(paper8,) * 3)
    img = cv2.blendLinear(content, bg, paper_mask, 1 - paper_mask)  # paper (white beyond the content) on the table

    # lighting: a linear gradient in a random direction times the exposure, then the white-balance gains
    g = rng.uniform(*cond.light_gradient)
    angle = rng.uniform(0, 2 * math.pi)
    xs = ((np.arange(W, dtype=np.float32) / W - 0.5) * math.cos(angle))[None, :]
    ys = ((np.arange(Hh, dtype=np.float32) / Hh - 0.5) * math.sin(angle))[:, None]
    t = (xs + ys) / math.sqrt(0.5)  # in [-1, 1]
    exposure = rng.uniform(*cond.exposure)
    gains = np.exp(rng.normal(0, cond.white_balance, size=3)).astype(np.float32)
    gains /= gains.mean()
    light = (exposure * (1 - g / 2 + g / 2 * t)).astype(np.float32)
    img = cv2.multiply(img, cv2.merge([light * gc for gc in gains]), dtype=cv2.CV_8U)
    sigma = rng.uniform(*cond.blur_sigma_px)
    if sigma > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    noise = rng.uniform(*cond.noise_std)
    cv2.setRNGSeed(int(rng.integers(2 ** 31 - 1)))
    gauss = np.empty((Hh, W * 3), np.float32)
    cv2.randn(gauss, 0.0, 255.0 * noise)
    img8 = cv2.add(img, gauss.reshape(Hh, W, 3), dtype=cv2.CV_8U)  # saturating, rounded
    quality = int(rng.integers(cond.jpeg_quality[0], cond.jpeg_quality[1] + 1))
    ok, enc = cv2.imencode(".jpg", img8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise PatchlabError("JPEG encoding failed")
    photo = cv2.imdecode(enc, cv2.IMREAD_COLOR)[..., ::-1].copy()
    params.update({"light_gradient": g, "light_angle_deg": math.degrees(angle), "exposure": exposure,
                   "wb_gains": gains.tolist(), "blur_sigma_px": sigma, "noise_std": noise, "jpeg_quality": quality,
                   "print_scale": s, "page_px_per_mm": float(sx), "photo_px_per_mm_max": photo_px_per_mm})
    return SimulatedPhoto(image=photo, jpeg=enc.tobytes(), H=H_content / H_content[2, 2], H_paper=H_paper, params=params)


def _max_scale(H: np.ndarray, page_mm: tuple[float, float]) -> float:
    """Largest local scale (photo px per page mm) of a homography over the page corners."""
    w, h = page_mm
    best = 0.0
    for x, y in ((0, 0), (w, 0), (w, h), (0, h), (w / 2, h / 2)):
        p = apply_homography(H, np.array([[x, y], [x + 1, y], [x, y + 1]], dtype=np.float64))
        best = max(best, float(np.linalg.norm(p[1] - p[0])), float(np.linalg.norm(p[2] - p[0])))
    return best


def simulate_page_photo(page: Page, seed: int | np.random.Generator | None = None,
                        conditions: PhotoConditions | None = None, px_per_mm: float = 8.0,
                        printer: Callable[[np.ndarray], np.ndarray] | None = None) -> SimulatedPhoto:
    """Render a layout page at px_per_mm and photograph it (convenience over render_page + simulate_photo)."""
    return simulate_photo(render_page(page, px_per_mm=px_per_mm), page.size_mm, seed, conditions, printer)


# Known printer->camera colour transforms for tests and for users without a printer: out = b + c * (rgb ** gamma) @ A.T
SYNTHETIC_PRINTERS: Registry[dict] = Registry("synthetic printer")
SYNTHETIC_PRINTERS.register("mild", {"offset": 0.05, "contrast": 0.88, "gamma": 1.15,
                                     "crosstalk": [[0.86, 0.10, 0.04], [0.06, 0.84, 0.10], [0.03, 0.12, 0.85]]})
SYNTHETIC_PRINTERS.register("plain_inkjet", {"offset": 0.10, "contrast": 0.78, "gamma": 1.3,
                                             "crosstalk": [[0.76, 0.17, 0.07], [0.08, 0.74, 0.18], [0.05, 0.19, 0.76]]})


def synthetic_printer(name: str = "mild") -> Callable[[np.ndarray], np.ndarray]:
    """A known printer->camera colour transform on (N, 3) RGB in [0, 1]: gamut compression (paper white and ink
    black), channel crosstalk and a tone curve. Use as `simulate_photo(..., printer=synthetic_printer())`."""
    p = SYNTHETIC_PRINTERS.get(name)
    A = np.asarray(p["crosstalk"], dtype=np.float64)

    def apply(rgb: np.ndarray) -> np.ndarray:
        rgb = np.clip(np.asarray(rgb, dtype=np.float64), 0, 1)
        return np.clip(p["offset"] + p["contrast"] * (rgb ** p["gamma"]) @ A.T, 0, 1)

    return apply
