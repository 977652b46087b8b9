"""Frame sources: webcam, video file, RTSP/HTTP stream, image folder, synthetic scene; a latest-frame reader thread.

Every source has `read() -> BGR uint8 ndarray | None` (None = the stream ended) and `close()`, plus `info` (what was
asked for and what was actually obtained) and `status()`. Live sources (camera, stream) are wrapped in
`LatestFrameReader`, which keeps only the newest frame (no backlog lag) and reconnects with backoff.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np

from patchlab.errors import PatchlabError

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".y4m", ".mjpeg", ".mjpg", ".gif"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
BACKENDS = ("any", "v4l2", "dshow", "msmf", "avfoundation", "ffmpeg", "gstreamer")


class SourceState(str, Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass
class SourceStatus:
    state: SourceState
    frames: int = 0
    dropped: int = 0          # frames read by the reader thread but never consumed (replaced by a newer one)
    reconnects: int = 0       # successful reopenings
    failures: int = 0         # consecutive failed reads/opens right now
    last_error: str = ""

    def as_dict(self) -> dict:
        d = asdict(self)
        d["state"] = self.state.value
        return d


class FrameSource(Protocol):
    name: str
    info: dict

    def read(self) -> np.ndarray | None: ...

    def close(self) -> None: ...

    def status(self) -> SourceStatus: ...


def backend_id(name: str) -> int:
    """OpenCV capture API constant for a backend name (any, v4l2, dshow, msmf, avfoundation, ffmpeg, gstreamer)."""
    table = {"any": cv2.CAP_ANY, "v4l2": cv2.CAP_V4L2, "dshow": cv2.CAP_DSHOW, "msmf": cv2.CAP_MSMF,
             "avfoundation": cv2.CAP_AVFOUNDATION, "ffmpeg": cv2.CAP_FFMPEG, "gstreamer": cv2.CAP_GSTREAMER}
    key = str(name).lower()
    if key not in table:
        raise PatchlabError(f"unknown capture backend '{name}'; choose from {', '.join(BACKENDS)}")
    return table[key]


def _fourcc_text(value: float) -> str:
    code = int(value)
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))
    return text if text.isprintable() and text.strip() else ""


@dataclass
class CameraRequest:
    """What to ask a webcam for. Requests that a driver ignores are reported, not hidden."""

    index: int = 0
    backend: str = "any"
    width: int | None = 1280
    height: int | None = 720
    fps: float | None = 30
    mjpg: bool = True
    open_timeout_s: float = 5.0


class OpenCVSource:
    """One `cv2.VideoCapture`: a camera index, a video file or a stream URL. Synchronous; no reconnect logic."""

    def __init__(self, target: int | str, kind: str, capture, name: str, info: dict):
        self.target, self.kind, self._cap, self.name, self.info = target, kind, capture, name, info
        self._frames = 0
        self._state = SourceState.CONNECTED

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            return None
        ok, frame = self._cap.read()
        if not ok or frame is None:
            self._state = SourceState.ENDED
            return None
        self._frames += 1
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        return frame

    def status(self) -> SourceStatus:
        return SourceStatus(self._state, frames=self._frames)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._state = SourceState.CLOSED

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _open_with_timeout(opener: Callable[[], object], timeout_s: float, what: str):
    """Run a possibly blocking VideoCapture constructor in a daemon thread; never hang the caller."""
    box: dict = {}

    def run() -> None:
        try:
            box["cap"] = opener()
        except Exception as exc:  # noqa: BLE001 - reported below as one line
            box["error"] = exc

    worker = threading.Thread(target=run, name=f"open {what}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise PatchlabError(f"{what}: did not open within {timeout_s:g} s")
    if "error" in box:
        raise PatchlabError(f"{what}: could not open ({str(box['error']).splitlines()[0][:160]})")
    return box["cap"]


def open_camera(request: CameraRequest | int = 0, capture_factory: Callable | None = None) -> OpenCVSource:
    """Open a webcam: MJPG first, then resolution and fps; report what the driver actually gave."""
    req = request if isinstance(request, CameraRequest) else CameraRequest(index=int(request))
    api = backend_id(req.backend)
    what = f"camera {req.index}"
    if sys.platform == "win32":  # MSMF can take many seconds to open with hardware transforms on
        os.environ.setdefault("OPENCV_VIDEOIO_MSMF_ENABLE_HW_TRANSFORMS", "0")
    if capture_factory is None:
        device = Path(f"/dev/video{req.index}")
        if sys.platform.startswith("linux") and req.backend in ("any", "v4l2") and not device.exists():
            found = sorted(p.name for p in Path("/dev").glob("video*"))
            seen = "found " + ", ".join(found) if found else "no /dev/video* devices on this machine"
            raise PatchlabError(f"no camera at index {req.index} ({device} does not exist; {seen})")
        capture_factory = lambda: cv2.VideoCapture(req.index, api)  # noqa: E731
    cap = _open_with_timeout(capture_factory, req.open_timeout_s, what)
    if cap is None or not cap.isOpened():
        if cap is not None:
            cap.release()
        raise PatchlabError(f"no camera at index {req.index} (backend {req.backend}: could not open it)")
    if req.mjpg:  # before width/height: many UVC cameras reach 720p30 only in MJPG
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
    if req.width:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, req.width)
    if req.height:
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, req.height)
    if req.fps:
        cap.set(cv2.CAP_PROP_FPS, req.fps)
    obtained = {"width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                "fps": float(cap.get(cv2.CAP_PROP_FPS)), "fourcc": _fourcc_text(cap.get(cv2.CAP_PROP_FOURCC))}
    try:
        obtained["backend"] = cap.getBackendName()
    except Exception:  # noqa: BLE001 - fakes and some builds lack it
        obtained["backend"] = req.backend
    requested = {"width": req.width, "height": req.height, "fps": req.fps, "fourcc": "MJPG" if req.mjpg else None,
                 "backend": req.backend}
    ignored = [k for k in ("width", "height", "fourcc") if requested[k] and obtained[k] and requested[k] != obtained[k]]
    info = {"kind": "camera", "index": req.index, "requested": requested, "obtained": obtained, "ignored": ignored}
    return OpenCVSource(req.index, "camera", cap, what, info)


def _capture_info(cap, kind: str, target: str) -> dict:
    return {"kind": kind, "target": target, "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), "fps": float(cap.get(cv2.CAP_PROP_FPS)),
            "frame_count": int(cap.get(cv2.CAP_PROP_FRAME_COUNT))}


def open_video_file(path: str | Path) -> OpenCVSource:
    """A video file read frame by frame (every frame, no drops)."""
    path = Path(path)
    if not path.exists():
        raise PatchlabError(f"{path}: no such video file")
    if path.is_dir():
        raise PatchlabError(f"{path}: is a folder (use it as an image-folder source)")
    if path.stat().st_size == 0:
        raise PatchlabError(f"{path}: unreadable video file (empty)")
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise PatchlabError(f"{path}: unreadable video file (no decoder could open it)")
    source = OpenCVSource(str(path), "video", cap, path.name, _capture_info(cap, "video", str(path)))
    ok, first = cap.read()
    if not ok or first is None:
        source.close()
        raise PatchlabError(f"{path}: unreadable video file (no frame could be decoded)")
    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
    return source


def open_stream(url: str, timeout_s: float = 5.0) -> OpenCVSource:
    """An RTSP/HTTP(S)/RTMP stream via FFmpeg with open and read timeouts."""
    ms = int(timeout_s * 1000)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
    cap = _open_with_timeout(lambda: cv2.VideoCapture(url, cv2.CAP_FFMPEG, params), timeout_s + 2, f"stream {url}")
    if not cap.isOpened():
        cap.release()
        raise PatchlabError(f"stream {url}: refused or unreachable (could not connect or no video in it)")
    return OpenCVSource(url, "stream", cap, url, _capture_info(cap, "stream", url))


class CountingSource:
    """Shared bookkeeping for in-process sources (folders, synthetic scenes): state, frame count, context manager."""

    _state: SourceState = SourceState.CONNECTED
    _i: int = 0

    def status(self) -> SourceStatus:
        return SourceStatus(self._state, frames=self._i)

    def close(self) -> None:
        self._state = SourceState.CLOSED

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FolderSource(CountingSource):
    """Images of a folder in name order, read as BGR frames; optionally looping."""

    def __init__(self, folder: str | Path, loop: bool = False):
        from patchlab.data import list_images

        self.files = list_images(folder)
        self.loop = loop
        self.name = Path(folder).name
        self._i = 0
        self._state = SourceState.CONNECTED
        self.info = {"kind": "folder", "target": str(folder), "images": len(self.files)}

    def read(self) -> np.ndarray | None:
        if self._state is SourceState.CLOSED:
            return None
        if self._i >= len(self.files):
            if not self.loop:
                self._state = SourceState.ENDED
                return None
            self._i = 0
        path = self.files[self._i]
        self._i += 1
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:  # formats OpenCV lacks: go through the foundation reader
            from patchlab.data import read_image, to_uint8_hwc

            frame = cv2.cvtColor(to_uint8_hwc(read_image(path)), cv2.COLOR_RGB2BGR)
        return frame


class SyntheticSource(CountingSource):
    """A frame source over a SyntheticScene: `frames` frames (None = endless), optionally paced at the scene fps."""

    def __init__(self, frames: int | None = 300, realtime: bool = False, scene=None, **scene_kwargs):
        from patchlab.simulate.scene import SyntheticScene

        self.scene = scene or SyntheticScene(**scene_kwargs)
        self.frames, self.realtime = frames, realtime
        self.name = "synthetic"
        self.last = None  # the SceneFrame (image plus ground truth) of the frame read last
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


@dataclass
class ReconnectPolicy:
    max_failures: int = 5          # consecutive failed reopen attempts before giving up
    backoff_s: float = 0.25        # first wait; doubles each attempt
    max_backoff_s: float = 4.0
    read_timeout_s: float = 5.0    # consumer waits this long for a new frame before reporting a stall


class LatestFrameReader:
    """A daemon thread reads a source as fast as it delivers and keeps only the newest frame.

    After a failed read it closes the source, waits (exponential backoff) and reopens it via `opener`.
    After `max_failures` consecutive failed attempts it stops; `read()` then raises a one-line PatchlabError.
    `on_state(status)` is called from the reader thread on every state change.
    """

    def __init__(self, opener: Callable[[], FrameSource], name: str = "source",
                 policy: ReconnectPolicy | None = None, on_state: Callable[[SourceStatus], None] | None = None,
                 first: FrameSource | None = None):
        self.opener, self.name, self.policy, self.on_state = opener, name, policy or ReconnectPolicy(), on_state
        self._source = first
        self.info: dict = dict(first.info) if first is not None else {}
        self._lock = threading.Lock()
        self._fresh = threading.Condition(self._lock)
        self._frame: np.ndarray | None = None
        self._seq = 0
        self._consumed = 0
        self._stop = threading.Event()
        self._status = SourceStatus(SourceState.CONNECTING if first is None else SourceState.CONNECTED)
        self.history: list[SourceState] = [self._status.state]
        self._thread = threading.Thread(target=self._run, name=f"reader {name}", daemon=True)
        self._thread.start()

    # -- reader thread ------------------------------------------------------------------------------------------
    def _set(self, state: SourceState, error: str | None = None, **changes) -> None:
        with self._lock:
            self._status.state = state
            if error is not None:
                self._status.last_error = error
            for k, v in changes.items():
                setattr(self._status, k, v)
            snapshot = SourceStatus(**asdict(self._status))
            snapshot.state = state
            if not self.history or self.history[-1] is not state:
                self.history.append(state)
            self._fresh.notify_all()
        if self.on_state is not None:
            self.on_state(snapshot)

    def _reopen(self) -> bool:
        """Back off and reopen until it works, `max_failures` is reached or close() is called."""
        pol = self.policy
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            self._set(SourceState.RECONNECTING, failures=attempt)
            if self._stop.wait(min(pol.backoff_s * 2 ** (attempt - 1), pol.max_backoff_s)):
                return False
            try:
                self._source = self.opener()
                self.info = dict(self._source.info)
                self._set(SourceState.CONNECTED, failures=0, reconnects=self._status.reconnects + 1)
                return True
            except PatchlabError as exc:
                self._status.last_error = str(exc)
            if attempt >= pol.max_failures:
                self._set(SourceState.FAILED, error=f"{self.name}: stopped after {attempt} failed reconnect attempts "
                                                    f"({self._status.last_error or 'no frames'})", failures=attempt)
                return False
        return False

    def _run(self) -> None:
        if self._source is None:
            try:
                self._source = self.opener()
                self.info = dict(self._source.info)
                self._set(SourceState.CONNECTED)
            except PatchlabError as exc:
                self._status.last_error = str(exc)
                if not self._reopen():
                    return
        while not self._stop.is_set():
            try:
                frame = self._source.read()
            except Exception as exc:  # noqa: BLE001 - a driver error is a failed read
                frame, self._status.last_error = None, f"read error: {exc}"
            if frame is None:
                self._close_source()
                if self._stop.is_set() or not self._reopen():
                    break
                continue
            with self._lock:
                if self._seq > self._consumed:
                    self._status.dropped += 1
                self._frame = frame
                self._seq += 1
                self._status.frames = self._seq
                self._fresh.notify_all()
        self._close_source()

    def _close_source(self) -> None:
        if self._source is not None:
            try:
                self._source.close()
            finally:
                self._source = None

    # -- consumer side --------------------------------------------------------------------------------------------
    def read(self, timeout_s: float | None = None) -> np.ndarray | None:
        """The newest frame not yet returned; waits for one. None after close(). Raises once the source failed."""
        timeout = self.policy.read_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        with self._fresh:
            if self._stop.is_set():
                return None
            while self._seq <= self._consumed:
                state = self._status.state
                if state is SourceState.FAILED:
                    raise PatchlabError(self._status.last_error or f"{self.name}: failed")
                if state is SourceState.CLOSED or self._stop.is_set():
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    if state is SourceState.RECONNECTING:  # keep waiting while reconnect attempts remain
                        deadline = time.monotonic() + timeout
                        continue
                    raise PatchlabError(f"{self.name}: no frame for {timeout:g} s (state {state.value})")
                self._fresh.wait(left)
            self._consumed = self._seq
            return self._frame

    def status(self) -> SourceStatus:
        with self._lock:
            return SourceStatus(**asdict(self._status))

    def close(self, join_timeout_s: float = 5.0) -> None:
        self._stop.set()
        with self._fresh:
            self._fresh.notify_all()
        self._thread.join(join_timeout_s)
        if self._status.state is not SourceState.FAILED:
            self._set(SourceState.CLOSED)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class SourceSpec:
    """A parsed frame source (see parse_source)."""

    kind: str                       # camera | video | stream | folder | synthetic
    target: int | str
    options: dict = field(default_factory=dict)


def parse_source(text: str | int) -> SourceSpec:
    """'0' -> camera, 'clip.mp4' -> video, 'rtsp://…' -> stream, a folder -> folder, 'synthetic[:N]' -> synthetic."""
    s = str(text).strip()
    if s.isdigit():
        return SourceSpec("camera", int(s))
    if s == "synthetic" or s.startswith("synthetic:"):
        frames = s.split(":", 1)[1] if ":" in s else ""
        if frames and not frames.isdigit():
            raise PatchlabError(f"source={s}: expected synthetic or synthetic:<frames>")
        return SourceSpec("synthetic", "synthetic", {"frames": int(frames)} if frames else {})
    if s.lower().startswith(STREAM_SCHEMES):
        return SourceSpec("stream", s)
    path = Path(s).expanduser()
    if path.is_dir():
        return SourceSpec("folder", str(path))
    if path.is_file():
        return SourceSpec("video", str(path))
    raise PatchlabError(f"source={s}: no such file or folder (expected a camera index, a video file, "
                        f"an rtsp:// or http:// URL, an image folder or 'synthetic')")


def open_source(text: str | int, camera: CameraRequest | None = None, policy: ReconnectPolicy | None = None,
                on_state: Callable[[SourceStatus], None] | None = None, loop: bool = False,
                synthetic: dict | None = None) -> FrameSource:
    """Open any source from its text (see parse_source). Cameras and streams get a reconnecting latest-frame reader;
    files, folders and the synthetic scene are read frame by frame (every frame, deterministic)."""
    spec = parse_source(text)
    if spec.kind == "camera":
        req = camera or CameraRequest()
        req = CameraRequest(**{**asdict(req), "index": spec.target})
        first = open_camera(req)  # fails fast with a clear message if there is no such camera
        return LatestFrameReader(lambda: open_camera(req), name=f"camera {spec.target}", policy=policy,
                                 on_state=on_state, first=first)
    if spec.kind == "stream":
        first = open_stream(str(spec.target))
        return LatestFrameReader(lambda: open_stream(str(spec.target)), name=str(spec.target), policy=policy,
                                 on_state=on_state, first=first)
    if spec.kind == "folder":
        return FolderSource(spec.target, loop=loop)
    if spec.kind == "video":
        return open_video_file(spec.target)
    return SyntheticSource(**{**spec.options, **(synthetic or {})})


def opencv_quiet() -> None:
    """Silence OpenCV's own WARN lines on stderr (the CLI reports failures itself)."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own av_log lines (AV_LOG_QUIET)
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except Exception:  # noqa: BLE001 - older builds lack utils.logging
        pass
