"""A camera scene with ground truth: a sheet with four ArUco corner markers (and optionally a printed patch) over a
background photo, seen by a pinhole camera under smoothly moving perspective. Every frame comes with ground truth.

    scene = SyntheticScene(patch=load_patch("printables/toaster_efficientnet_lite0.png"))
    frame = scene.frame(12)          # SceneFrame: .image (BGR uint8), .markers, .patch_quad, .patch_size_px
    for bgr in synthetic_frames(90): ...
    write_video("scene.y4m", synthetic_frames(90), fps=30)   # .y4m for Chromium's fake camera, or .avi/.mp4

Sheet layout (texture pixels, side SHEET_PX): markers 0, 1, 2, 3 at the TL, TR, BR, BL corners, each MARKER_PX
wide with a QUIET_PX white margin. The square between the markers' inner corners is the inner area; the printed
patch fills it scaled by SHEET_PATCH_SCALE about its centre (a PATCH_GAP_PX white gap to the markers), which is
what LiveState's `patch_scale` describes for the size measurement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import cv2
import numpy as np

from patchlab.capture.virtual_patch import Patch, composite_onto_quad
from patchlab.errors import PatchlabError
from patchlab.geometry import apparent_size, apply_homography, edge_quad, quad_homography, quad_in_quad
from patchlab.physical.markers import marker_image

SHEET_PX = 512
MARKER_PX = 88
QUIET_PX = 24
SHEET_IDS = (0, 1, 2, 3)
INNER_AREA = (QUIET_PX + MARKER_PX, SHEET_PX - QUIET_PX - MARKER_PX)  # between the markers' inner corners
PATCH_GAP_PX = 16  # white gap between the printed patch and the marker corners (keeps the markers detectable)
SHEET_PATCH_SCALE = (INNER_AREA[1] - INNER_AREA[0] - 2 * PATCH_GAP_PX) / (INNER_AREA[1] - INNER_AREA[0])


def sheet_marker_corners() -> dict[int, np.ndarray]:
    """Marker corners in sheet texture edge coordinates (TL, TR, BR, BL per marker)."""
    lo, hi = QUIET_PX, SHEET_PX - QUIET_PX - MARKER_PX
    origins = {0: (lo, lo), 1: (hi, lo), 2: (hi, hi), 3: (lo, hi)}
    m = MARKER_PX
    return {i: np.array([[x, y], [x + m, y], [x + m, y + m], [x, y + m]], np.float64) for i, (x, y) in origins.items()}


def render_sheet(patch: Patch | None = None, px: int = SHEET_PX) -> np.ndarray:
    """The printed sheet as a BGR uint8 texture: white paper, four markers, the patch (if any) in the middle."""
    sheet = np.full((SHEET_PX, SHEET_PX, 3), 255, np.uint8)
    for i, c in sheet_marker_corners().items():
        x, y = c[0].astype(int)
        sheet[y:y + MARKER_PX, x:x + MARKER_PX] = marker_image(i, MARKER_PX)[..., None]
    if patch is not None:
        w, h = patch.size
        composite_onto_quad(sheet, patch, quad_in_quad(_inner_area() - 0.5, w, h, SHEET_PATCH_SCALE))
    if px != SHEET_PX:
        sheet = cv2.resize(sheet, (px, px), interpolation=cv2.INTER_AREA)
    return sheet


def _inner_area() -> np.ndarray:
    a, b = INNER_AREA
    return np.array([[a, a], [b, a], [b, b], [a, b]], np.float64)


def default_backgrounds(size: tuple[int, int] = (640, 480)) -> list[np.ndarray]:
    """The built-in sample photos (scikit-image, offline) as BGR frames covering `size`."""
    from patchlab.data import load_samples, to_uint8_hwc

    return [cover(cv2.cvtColor(to_uint8_hwc(s.image), cv2.COLOR_RGB2BGR), size) for s in load_samples()]


def cover(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize (area) and centre-crop a BGR image to exactly `size` = (w, h)."""
    w, h = size
    ih, iw = image.shape[:2]
    s = max(w / iw, h / ih)
    resized = cv2.resize(image, (max(w, round(iw * s)), max(h, round(ih * s))),
                         interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    y, x = (resized.shape[0] - h) // 2, (resized.shape[1] - w) // 2
    return np.ascontiguousarray(resized[y:y + h, x:x + w])


@dataclass
class Pose:
    """Sheet pose: side as a fraction of the frame height, centre offset (fractions), Euler angles in degrees."""

    size: float = 0.6
    dx: float = 0.0
    dy: float = 0.0
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0


@dataclass
class Motion:
    """Smooth deterministic motion: each parameter = mid + amp * sin(2π t / period + phase)."""

    size: tuple[float, float] = (0.3, 0.75)       # range of the sheet side / frame height
    shift: float = 0.08                             # max centre offset, fraction of the frame
    yaw: float = 30.0
    pitch: float = 25.0
    roll: float = 15.0
    period_s: float = 6.0

    def pose(self, t: float, phase: float = 0.0) -> Pose:
        lo, hi = self.size
        T = self.period_s
        s = lambda k, p: np.sin(2 * np.pi * t / (T * k) + phase + p)  # noqa: E731 - incommensurate periods
        return Pose(size=(lo + hi) / 2 + (hi - lo) / 2 * s(1.0, 0.0), dx=self.shift * s(0.77, 1.3),
                    dy=self.shift * s(1.31, 2.1), yaw=self.yaw * s(0.61, 0.4), pitch=self.pitch * s(0.89, 2.7),
                    roll=self.roll * s(1.13, 4.0))


def pose_homography(pose: Pose, frame_size: tuple[int, int], focal: float | None = None) -> np.ndarray:
    """Homography from sheet texture pixel-centre coordinates to frame pixel-centre coordinates."""
    w, h = frame_size
    f = focal or 0.9 * w
    yaw, pitch, roll = np.radians([pose.yaw, pose.pitch, pose.roll])
    Ry = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    Rx = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    Rz = np.array([[np.cos(roll), -np.sin(roll), 0], [np.sin(roll), np.cos(roll), 0], [0, 0, 1]])
    R = Rz @ Rx @ Ry
    distance = f / (pose.size * h)  # a unit sheet facing the camera spans size * h pixels
    corners = np.array([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0]]) @ R.T
    corners += [pose.dx * w / f * distance, pose.dy * h / f * distance, distance]
    img = corners[:, :2] / corners[:, 2:] * f + [w / 2 - 0.5, h / 2 - 0.5]
    return quad_homography(edge_quad(SHEET_PX, SHEET_PX), img)


@dataclass
class SceneFrame:
    index: int
    image: np.ndarray                       # (h, w, 3) BGR uint8
    markers: dict[int, np.ndarray]          # ground-truth marker corners (TL, TR, BR, BL), pixel-centre coordinates
    inner_quad: np.ndarray                  # ground truth of the area between the markers' inner corners
    patch_quad: np.ndarray                  # ground truth of the printed patch area (inner quad x SHEET_PATCH_SCALE)
    sheet_quad: np.ndarray
    homography: np.ndarray                  # sheet texture pixel centres -> frame pixel centres
    pose: Pose = field(default_factory=Pose)

    @property
    def patch_size_px(self) -> float:
        return apparent_size(self.patch_quad)


class SyntheticScene:
    """Renders frame i of a moving sheet (markers + optional printed patch) over background photos."""

    def __init__(self, patch: Patch | None = None, backgrounds: list[np.ndarray] | None = None,
                 size: tuple[int, int] = (640, 480), fps: float = 30.0, motion: Motion | None = None,
                 background_every: int = 0, noise: float = 2.0, blur: float = 0.6, lighting: float = 0.1,
                 seed: int = 0):
        self.size, self.fps, self.motion = (int(size[0]), int(size[1])), float(fps), motion or Motion()
        self.patch, self.noise, self.blur, self.lighting, self.seed = patch, noise, blur, lighting, seed
        self.backgrounds = [cover(b, self.size) for b in backgrounds] if backgrounds else default_backgrounds(self.size)
        if not self.backgrounds:
            raise PatchlabError("synthetic scene: no background images")
        self.background_every = int(background_every)
        base = render_sheet(patch)
        self._levels = [base]  # area-downsampled copies: the warp then never shrinks a texture more than 2x
        while self._levels[-1].shape[0] > 64:
            self._levels.append(cv2.resize(self._levels[-1], None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))
        self._phase = (seed * 0.7351) % (2 * np.pi)

    def background(self, index: int) -> np.ndarray:
        n = len(self.backgrounds)
        k = (index // self.background_every) % n if self.background_every else self.seed % n
        return self.backgrounds[k]

    def frame(self, index: int, pose: Pose | None = None) -> SceneFrame:
        w, h = self.size
        pose = pose or self.motion.pose(index / self.fps, self._phase)
        H = pose_homography(pose, self.size)
        sheet_quad = apply_homography(H, edge_quad(SHEET_PX, SHEET_PX))
        side = apparent_size(sheet_quad)
        level = 0
        while level + 1 < len(self._levels) and self._levels[level + 1].shape[0] >= 1.5 * side:
            level += 1
        tex = self._levels[level]
        k = SHEET_PX / tex.shape[0]
        to_level = np.array([[k, 0, (k - 1) / 2], [0, k, (k - 1) / 2], [0, 0, 1]])  # level px centres -> base
        M = H @ to_level
        warped = cv2.warpPerspective(tex, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        mask = cv2.warpPerspective(np.ones(tex.shape[:2], np.float32), M, (w, h), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT)[..., None]
        out = self.background(index).astype(np.float32) * (1 - mask) + warped.astype(np.float32) * mask
        rng = np.random.default_rng(self.seed * 100003 + index)
        if self.lighting:
            out *= 1.0 + self.lighting * np.sin(2 * np.pi * index / (self.fps * 4.3) + self._phase)
        if self.blur:
            out = cv2.GaussianBlur(out, (0, 0), self.blur)
        if self.noise:
            out += rng.normal(0, self.noise, out.shape).astype(np.float32)
        image = np.clip(out + 0.5, 0, 255).astype(np.uint8)
        markers = {i: apply_homography(H, c - 0.5) for i, c in sheet_marker_corners().items()}
        inner = _inner_area() - 0.5
        patch_quad = apply_homography(H, quad_in_quad(inner, 1, 1, SHEET_PATCH_SCALE))
        return SceneFrame(index, image, markers, apply_homography(H, inner), patch_quad, sheet_quad, H, pose)


def synthetic_frames(n: int, **scene_kwargs) -> Iterator[np.ndarray]:
    """n BGR frames of a SyntheticScene (same arguments)."""
    scene = SyntheticScene(**scene_kwargs)
    for i in range(n):
        yield scene.frame(i).image
