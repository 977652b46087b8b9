"""Synthetic camera scene: a sheet with four ArUco corner markers (and optionally a printed patch) over a background
photo, seen by a pinhole camera under smoothly moving perspective. Every frame comes with ground truth.

    scene = SyntheticScene(patch=load_patch("printables/toaster_efficientnet_lite0.png"))
    frame = scene.frame(12)          # SceneFrame: .image (BGR uint8), .markers, .patch_quad, .patch_size_px
    for bgr in synthetic_frames(90): ...
    write_video("scene.y4m", synthetic_frames(90), fps=30)   # .y4m for Chromium's fake camera, or .avi/.mp4

Sheet layout (texture pixels, side SHEET_PX): markers 0, 1, 2, 3 at the TL, TR, BR, BL corners, each MARKER_PX
wide with a QUIET_PX white margin. The square between the markers' inner corners is the inner area; the printed
patch fills it scaled by SHEET_PATCH_SCALE about its centre (a PATCH_GAP_PX white gap to the markers), which is
what `--patch-scale` describes for the size measurement.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from patchlab.capture.sources import CountingSource, SourceState
from patchlab.capture.virtual_patch import Patch, apparent_size, composite_onto_quad, map_points, quad_in_quad
from patchlab.errors import PatchlabError

SHEET_PX = 512
MARKER_PX = 88
QUIET_PX = 24
SHEET_IDS = (0, 1, 2, 3)
INNER_AREA = (QUIET_PX + MARKER_PX, SHEET_PX - QUIET_PX - MARKER_PX)  # between the markers' inner corners
PATCH_GAP_PX = 16  # white gap between the printed patch and the marker corners (keeps the markers detectable)
SHEET_PATCH_SCALE = (INNER_AREA[1] - INNER_AREA[0] - 2 * PATCH_GAP_PX) / (INNER_AREA[1] - INNER_AREA[0])


def _cv2():
    import cv2

    return cv2


def sheet_marker_corners() -> dict[int, np.ndarray]:
    """Marker corners in sheet texture edge coordinates (TL, TR, BR, BL per marker)."""
    lo, hi = QUIET_PX, SHEET_PX - QUIET_PX - MARKER_PX
    origins = {0: (lo, lo), 1: (hi, lo), 2: (hi, hi), 3: (lo, hi)}
    m = MARKER_PX
    return {i: np.array([[x, y], [x + m, y], [x + m, y + m], [x, y + m]], np.float64) for i, (x, y) in origins.items()}


def render_sheet(patch: Patch | None = None, px: int = SHEET_PX) -> np.ndarray:
    """The printed sheet as a BGR uint8 texture: white paper, four markers, the patch (if any) in the middle."""
    from patchlab.physical.markers import marker_image

    sheet = np.full((SHEET_PX, SHEET_PX, 3), 255, np.uint8)
    for i, c in sheet_marker_corners().items():
        x, y = c[0].astype(int)
        sheet[y:y + MARKER_PX, x:x + MARKER_PX] = marker_image(i, MARKER_PX)[..., None]
    if patch is not None:
        w, h = patch.size
        composite_onto_quad(sheet, patch, quad_in_quad(_inner_area() - 0.5, w, h, SHEET_PATCH_SCALE))
    if px != SHEET_PX:
        sheet = _cv2().resize(sheet, (px, px), interpolation=_cv2().INTER_AREA)
    return sheet


def _inner_area() -> np.ndarray:
    a, b = INNER_AREA
    return np.array([[a, a], [b, a], [b, b], [a, b]], np.float64)


def default_backgrounds(size: tuple[int, int] = (640, 480)) -> list[np.ndarray]:
    """The built-in sample photos (scikit-image, offline) as BGR frames covering `size`."""
    from patchlab.data import load_samples, to_uint8_hwc

    return [cover(_cv2().cvtColor(to_uint8_hwc(s.image), _cv2().COLOR_RGB2BGR), size) for s in load_samples()]


def cover(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize (area) and centre-crop a BGR image to exactly `size` = (w, h)."""
    cv2 = _cv2()
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
    cv2 = _cv2()
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
    src = np.array([[-0.5, -0.5], [SHEET_PX - 0.5, -0.5], [SHEET_PX - 0.5, SHEET_PX - 0.5], [-0.5, SHEET_PX - 0.5]],
                   np.float32)
    return cv2.getPerspectiveTransform(src, img.astype(np.float32)).astype(np.float64)


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
            self._levels.append(_cv2().resize(self._levels[-1], None, fx=0.5, fy=0.5, interpolation=_cv2().INTER_AREA))
        self._phase = (seed * 0.7351) % (2 * np.pi)

    def background(self, index: int) -> np.ndarray:
        n = len(self.backgrounds)
        k = (index // self.background_every) % n if self.background_every else self.seed % n
        return self.backgrounds[k]

    def frame(self, index: int, pose: Pose | None = None) -> SceneFrame:
        cv2 = _cv2()
        w, h = self.size
        pose = pose or self.motion.pose(index / self.fps, self._phase)
        H = pose_homography(pose, self.size)
        sheet_quad = map_points(H, np.array([[-0.5, -0.5], [SHEET_PX - 0.5, -0.5], [SHEET_PX - 0.5, SHEET_PX - 0.5],
                                             [-0.5, SHEET_PX - 0.5]]))
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
        markers = {i: map_points(H, c - 0.5) for i, c in sheet_marker_corners().items()}
        inner = _inner_area() - 0.5
        patch_quad = map_points(H, quad_in_quad(inner, 1, 1, SHEET_PATCH_SCALE))
        return SceneFrame(index, image, markers, map_points(H, inner), patch_quad, sheet_quad, H, pose)


class SyntheticSource(CountingSource):
    """A frame source over a SyntheticScene: `frames` frames (None = endless), optionally paced at the scene fps."""

    def __init__(self, frames: int | None = 300, realtime: bool = False, scene: SyntheticScene | None = None,
                 **scene_kwargs):
        self.scene = scene or SyntheticScene(**scene_kwargs)
        self.frames, self.realtime = frames, realtime
        self.name = "synthetic"
        self.last: SceneFrame | None = None
        self._i = 0
        self._t0 = time.monotonic()
        self._state = SourceState.CONNECTED
        self.info = {"kind": "synthetic", "width": self.scene.size[0], "height": self.scene.size[1],
                     "fps": self.scene.fps, "frame_count": frames or 0,
                     "patch": self.scene.patch.name if self.scene.patch is not None else None}

    def read(self) -> np.ndarray | None:
        if self._state is SourceState.CLOSED or (self.frames is not None and self._i >= self.frames):
            self._state = SourceState.ENDED if self._state is not SourceState.CLOSED else self._state
            return None
        if self.realtime:
            wait = self._t0 + self._i / self.scene.fps - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        self.last = self.scene.frame(self._i)
        self._i += 1
        return self.last.image



def synthetic_frames(n: int, **scene_kwargs) -> Iterator[np.ndarray]:
    """n BGR frames of a SyntheticScene (same arguments)."""
    scene = SyntheticScene(**scene_kwargs)
    for i in range(n):
        yield scene.frame(i).image


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float = 30.0) -> Path:
    """Write BGR frames to .y4m (I420, what Chromium's --use-file-for-fake-video-capture reads), .avi (MJPG) or
    .mp4 (mp4v), through a temporary file renamed into place at the end (a kill leaves the previous video whole).
    Returns the path; raises if nothing could be written."""
    from patchlab.artifacts import atomic_path

    path = Path(path)
    codecs = {".avi": "MJPG", ".mp4": "mp4v", ".m4v": "mp4v", ".mkv": "MJPG", ".mov": "mp4v"}
    if path.suffix.lower() != ".y4m" and path.suffix.lower() not in codecs:
        raise PatchlabError(f"{path}: unsupported video type (use .y4m, .avi, .mp4, .mkv or .mov)")
    with atomic_path(path) as tmp:
        n = _write_frames(tmp, path, frames, fps, codecs.get(path.suffix.lower()))
        if n == 0:
            raise PatchlabError(f"{path}: no frames to write")
    return path


def _write_frames(tmp: Path, path: Path, frames: Iterable[np.ndarray], fps: float, fourcc: str | None) -> int:
    cv2 = _cv2()
    n = 0
    if fourcc is None:  # y4m
        with tmp.open("wb") as fh:
            for frame in frames:
                h, w = frame.shape[:2]
                if n == 0:
                    fh.write(f"YUV4MPEG2 W{w} H{h} F{round(fps * 1000)}:1000 Ip A1:1 C420jpeg\n".encode())
                fh.write(b"FRAME\n")
                fh.write(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
                n += 1
        return n
    writer = None
    try:
        for frame in frames:
            if writer is None:
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
                if not writer.isOpened():
                    raise PatchlabError(f"{path}: OpenCV could not open a {fourcc} video writer")
            writer.write(frame)
            n += 1
    finally:
        if writer is not None:
            writer.release()
    return n
