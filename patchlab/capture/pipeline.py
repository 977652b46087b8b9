"""The live classifier as a pure per-frame function: `process_frame(frame_bgr, state) -> (annotated_bgr, result)`.

    backend = load_backend("efficientnet_lite0")              # expensive: load once (st.cache_resource)
    state = LiveState(backend, target="toaster", patch=load_patch("p.png"), virtual=True)   # cheap, per session
    annotated, result = process_frame(frame_bgr, state)      # from any thread

`state` holds the backend (thread-safe), the settings and a small FPS meter under a lock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from patchlab.capture.inference import Backend, softmax
from patchlab.capture.overlay import draw_overlay
from patchlab.capture.virtual_patch import Anchor, Patch, VirtualPatch
from patchlab.errors import PatchlabError
from patchlab.geometry import apparent_size, edge_quad, quad_area, quad_homography, quad_in_quad, rect_corners
from patchlab.models.preprocess import CROP_FRACTION
from patchlab.physical.markers import detect_markers, sheet_quads

CROPS = ("centre", "full", "markers")


def centre_square(frame_shape: tuple[int, ...], fraction: float = CROP_FRACTION) -> np.ndarray:
    """The quad (pixel-centre coordinates of the outer edges) of the standard eval centre crop of a frame."""
    h, w = frame_shape[:2]
    side = min(h, w) * fraction
    return rect_corners((w - side) / 2 - 0.5, (h - side) / 2 - 0.5, side, side)


def frame_to_input(frame_bgr: np.ndarray, size: int, crop: str = "centre",
                   quad: np.ndarray | None = None) -> np.ndarray:
    """BGR uint8 frame -> RGB uint8 (size, size, 3) model input.

    centre: the standard eval transform (centre square of 87.5% of the short side, resized like PIL's bicubic);
    full: the whole frame squeezed to a square; markers: the given quad rectified by a homography.
    """
    return np.ascontiguousarray(_model_pixels(frame_bgr, size, crop, quad))


def _model_pixels(frame_bgr: np.ndarray, size: int, crop: str = "centre", quad: np.ndarray | None = None) -> np.ndarray:
    """frame_to_input, as an RGB (size, size, 3) uint8 array that may be a strided view: the backends read it into
    their own (1, 3, S, S) layout anyway, and the centre crop's resize already produces channel planes."""
    h, w = frame_bgr.shape[:2]
    if crop == "markers" and quad is not None:
        M = quad_homography(quad, edge_quad(size, size))
        side = float(np.sqrt(max(1.0, quad_area(quad))))
        if side > 2 * size:  # shrink the frame first so the warp never aliases
            f = 1.5 * size / side
            small = cv2.resize(frame_bgr, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
            S = np.array([[1 / f, 0, (1 / f - 1) / 2], [0, 1 / f, (1 / f - 1) / 2], [0, 0, 1]])
            crop_img = cv2.warpPerspective(small, M @ S, (size, size), flags=cv2.INTER_LINEAR,
                                           borderMode=cv2.BORDER_REPLICATE)
        else:
            crop_img = cv2.warpPerspective(frame_bgr, M, (size, size), flags=cv2.INTER_LINEAR,
                                           borderMode=cv2.BORDER_REPLICATE)
        return cv2.cvtColor(crop_img, cv2.COLOR_BGR2RGB)
    if crop == "full":
        return cv2.cvtColor(cv2.resize(frame_bgr, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    side = int(round(min(h, w) * CROP_FRACTION))
    y0, x0 = (h - side) // 2, (w - side) // 2
    region = frame_bgr[y0:y0 + side, x0:x0 + side]
    if side == size:
        return region[..., ::-1]  # BGR -> RGB
    # the eval transform's filter (PIL's antialiased bicubic) on the uint8 pixels: about twice as fast as cv2's
    # INTER_AREA at 420 -> 224, and the same resampling as patchlab.models.preprocess
    planes = F.interpolate(torch.from_numpy(region).permute(2, 0, 1)[None], size=(size, size), mode="bicubic",
                           antialias=True, align_corners=False)[0].numpy()
    return planes[::-1].transpose(1, 2, 0)  # BGR planes -> an RGB (H, W, 3) view


@dataclass
class FrameResult:
    index: int
    time_s: float                              # seconds since the state was created
    top5: list[dict]                           # [{"index", "label", "prob"}] best first
    target_index: int | None = None
    target_label: str | None = None
    target_prob: float | None = None
    is_target: bool | None = None              # top-1 == target
    fps: float = 0.0                           # smoothed rate of processed frames
    latency_ms: float = 0.0                    # this frame: markers + virtual patch + preprocess + classify + overlay
    markers: list[int] = field(default_factory=list)
    patch_size_px: float | None = None         # apparent patch size (side of a square of equal area)
    roi: str = "centre"                        # the input region actually used
    virtual_patch: bool = False                # a virtual patch was pasted into this frame
    defense: str | None = None                 # with a defense, is_target is about its (defended) prediction
    defended_index: int | None = None
    defended_label: str | None = None
    certified: bool | None = None              # PatchCleanser: no patch within its budget could change the answer

    @property
    def top1(self) -> dict:
        return self.top5[0]

    def as_dict(self) -> dict:
        return asdict(self)


class FpsMeter:
    """Frames per second: the frames of the last `window` seconds divided by the window, so it is the rate at which
    frames were really processed (an average of 1/interval over bursty frames, as an EMA of instantaneous rates
    gives, overstates it) and it falls to 0 when frames stop coming. Until a window has passed since the first
    frame it is (frames - 1) / their time span. `rate(now)` reads it without a tick; thread-safe."""

    def __init__(self, window: float = 2.0):
        self.window = float(window)
        self._times: deque[float] = deque()
        self._first: float | None = None
        self._lock = threading.Lock()

    def _rate(self, now: float) -> float:
        times = self._times
        while times and times[0] < now - self.window:
            times.popleft()
        if self._first is None:
            return 0.0
        if now - self._first >= self.window:
            return len(times) / self.window
        return (len(times) - 1) / max(now - self._first, 1e-9) if len(times) > 1 else 0.0

    def tick(self, now: float) -> float:
        with self._lock:
            if self._first is None:
                self._first = now
            self._times.append(now)
            return self._rate(now)

    def rate(self, now: float) -> float:
        with self._lock:
            return self._rate(now)


class LiveState:
    """Settings plus the (shared, thread-safe) backend for `process_frame`. Cheap to create per session.

    target: class name/index (defaults to the patch sidecar's target); patch + virtual: paste the patch;
    anchor: sheet | marker[:id] | fixed[:cx,cy,size]; patch_scale: the patch's side relative to the anchor quad
    (where the virtual patch goes, and for a printed sheet how big the patch is relative to the area between the
    markers' inner corners, for the apparent-size measurement); crop: centre | full | markers;
    detect: 'auto' runs ArUco detection only when the patch, the markers crop or a recording needs it;
    defense: a `patchlab.defenses.live.LiveDefense` applied to each model input (its answer is the frame's verdict).
    """

    def __init__(self, backend: Backend, target: str | int | None = None, patch: Patch | None = None,
                 virtual: bool = False, anchor: str | Anchor = "sheet", patch_scale: float = 1.0,
                 crop: str = "centre", detect: str | bool = "auto", overlay: bool = True, topk: int = 5,
                 defense=None):
        from patchlab.data import imagenet_classes

        if crop not in CROPS:
            raise PatchlabError(f"unknown crop '{crop}'; choose from {', '.join(CROPS)}")
        if virtual and patch is None:
            raise PatchlabError("a virtual patch needs a patch (patch=)")
        self.backend, self.crop, self.overlay, self.topk = backend, crop, overlay, int(topk)
        self.defense = defense  # a patchlab.defenses.live.LiveDefense (or None): called on the model input
        self.patch = patch
        if target is None and patch is not None:
            target = patch.target_index if patch.target_index is not None else patch.target
        self.target_index: int | None = None
        self.target_label: str | None = None
        if target is not None:
            self.target_index = imagenet_classes().lookup(target) if not isinstance(target, int) else int(target)
            if not 0 <= self.target_index < len(backend.labels):
                raise PatchlabError(f"target class {target} is outside the model's {len(backend.labels)} classes")
            self.target_label = backend.labels[self.target_index]
        anchor = anchor if isinstance(anchor, Anchor) else Anchor.parse(anchor, patch_scale)
        self.anchor = anchor
        self.virtual = VirtualPatch(patch, anchor) if virtual else None
        wants_markers = crop == "markers" or (self.virtual is not None and anchor.needs_markers())
        self.detect = wants_markers or detect is True or (detect in ("on", "always")) or (
            detect == "auto" and patch is not None)
        self.fps = FpsMeter()
        self.t0 = time.perf_counter()
        self._count = 0
        self._lock = threading.Lock()

    def next_index(self) -> int:
        with self._lock:
            self._count += 1
            return self._count - 1


def process_frame(frame_bgr: np.ndarray, state: LiveState, inplace: bool = False) -> tuple[np.ndarray, FrameResult]:
    """Classify one BGR uint8 frame (with the virtual patch pasted, if any) and draw the read-out.

    Returns a new annotated frame (the input is not modified; with `inplace=True`, for a caller that owns a fresh
    frame, the input itself is annotated and returned) and a FrameResult.
    """
    start = time.perf_counter()
    if frame_bgr is None or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
        raise PatchlabError(f"expected a BGR uint8 frame (H, W, 3), got {getattr(frame_bgr, 'shape', None)}")
    index = state.next_index()
    frame = frame_bgr if inplace else frame_bgr.copy()
    markers = detect_markers(frame) if state.detect else {}
    patch_quad = state.virtual.apply(frame, markers) if state.virtual is not None else None
    pasted = patch_quad is not None
    quads = sheet_quads(markers) if markers else None
    if patch_quad is None and quads is not None:  # a printed sheet: the patch is the inner quad x patch_scale
        patch_quad = quad_in_quad(quads[0], 1, 1, state.anchor.scale)
    roi_name, roi_quad = state.crop, None
    if state.crop == "markers":
        if quads is not None:
            roi_quad = quads[1]
        else:
            roi_name = "centre (markers not found)"
    size = state.backend.input_size
    x = _model_pixels(frame, size, "markers" if roi_quad is not None else
                      ("full" if state.crop == "full" else "centre"), roi_quad)
    probs = softmax(state.backend.logits(x).astype(np.float64))
    order = np.argsort(-probs)[:state.topk]
    labels = state.backend.labels
    top5 = [{"index": int(i), "label": labels[int(i)], "prob": float(probs[i])} for i in order]
    result = FrameResult(index=index, time_s=start - state.t0, top5=top5, markers=sorted(markers),
                         patch_size_px=apparent_size(patch_quad), roi=roi_name,
                         virtual_patch=pasted)
    if state.target_index is not None:
        result.target_index, result.target_label = state.target_index, state.target_label
        result.target_prob = float(probs[state.target_index])
        result.is_target = int(order[0]) == state.target_index
    if state.defense is not None:
        defended = state.defense(x)
        result.defense, result.defended_index = state.defense.name, defended.index
        result.defended_label, result.certified = defended.label, defended.certified
        if state.target_index is not None:
            result.is_target = defended.index == state.target_index
    if state.overlay:
        if roi_quad is None and state.crop != "full":
            roi_quad = centre_square(frame.shape)
        result.fps = state.fps.tick(time.perf_counter())
        result.latency_ms = (time.perf_counter() - start) * 1000  # on screen: everything but the drawing itself
        draw_overlay(frame, result, roi_quad, markers)
    else:
        result.fps = state.fps.tick(time.perf_counter())
    result.latency_ms = (time.perf_counter() - start) * 1000  # recorded: the whole call
    return frame, result
