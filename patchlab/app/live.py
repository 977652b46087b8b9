"""The Live camera page's per-session glue between streamlit-webrtc's frame callback and the page.

`LiveFeed.queued_callback` runs in streamlit-webrtc's worker thread with every frame that arrived since its last
call: it counts them (the camera's rate), processes the newest one with the capture pipeline's pure `process_frame`
(older ones are stale: processing them would only add latency), keeps the latest result under a lock and, while
recording, writes every result to a `Recorder`. The page (script thread) reads `latest()` and `rates()` from a
fragment: the FPS it shows is the rate of frames really processed over the last seconds, read at display time.
One LiveFeed per browser session, kept in that session's `st.session_state`; no `st.*` call happens off the script
thread.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

from patchlab.capture import FrameResult, LiveState, Recorder, process_frame
from patchlab.capture.pipeline import FpsMeter


def parse_ice_servers(text: str) -> list[dict]:
    """The RTC configuration's iceServers from JSON text; '' or '[]' = none (enough on localhost)."""
    from patchlab.errors import PatchlabError

    text = (text or "").strip()
    if not text:
        return []
    try:
        servers = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PatchlabError(f"ICE servers must be a JSON list such as "
                            f'[{{"urls": ["stun:stun.l.google.com:19302"]}}] ({exc.msg})') from None
    if not isinstance(servers, list) or not all(isinstance(s, dict) and "urls" in s for s in servers):
        raise PatchlabError('ICE servers must be a JSON list of objects with "urls"')
    return servers


class LiveFeed:
    """Latest result, frame count and optional recording for one session's live stream."""

    def __init__(self, state: LiveState):
        # The server's asyncio thread (aiortc's RTP, SRTP and jitter buffer, Streamlit) holds the GIL ~40 % of the
        # time; with the default 5 ms switch interval the frame worker waited that long to resume after every
        # C call (resize, inference, each drawing call). 1 ms hands it over sooner: 12.6-14.7 -> 15.4-16.1 processed
        # frames/s in A/B runs of the browser benchmark on the loaded 2-core VM.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
        self._lock = threading.Lock()
        self._state = state
        self._latest: FrameResult | None = None
        self._frames = 0
        self._error: str | None = None
        self._recorder: Recorder | None = None
        self._received = 0
        self._processed_rate, self._received_rate = FpsMeter(), FpsMeter()

    def set_state(self, state: LiveState) -> None:
        """Swap settings (model, target, overlay) without restarting the stream."""
        with self._lock:
            self._state = state

    # --- worker thread -------------------------------------------------------------------------------------------
    def process(self, frame_bgr: np.ndarray, inplace: bool = False) -> np.ndarray:
        with self._lock:
            state = self._state
        try:
            annotated, result = process_frame(frame_bgr, state, inplace=inplace)
        except Exception as exc:  # noqa: BLE001 - keep the stream alive; the page shows the error
            with self._lock:
                self._error = f"{type(exc).__name__}: {exc}"
            return frame_bgr
        result.fps = self._processed_rate.tick(time.perf_counter())
        with self._lock:
            self._latest, self._error = result, None
            self._frames += 1
            if self._recorder is not None:
                self._recorder.write(result)
        return annotated

    def callback(self, frame):
        """streamlit-webrtc `video_frame_callback`: av.VideoFrame in, annotated av.VideoFrame out."""
        import av

        self._count_received(1)
        out = self.process(frame.to_ndarray(format="bgr24"), inplace=True)  # a fresh array: draw on it
        new = av.VideoFrame.from_ndarray(out, format="bgr24")
        new.pts = frame.pts
        if frame.time_base is not None:
            new.time_base = frame.time_base
        return new

    async def queued_callback(self, frames: list) -> list:
        """streamlit-webrtc `queued_video_frames_callback`: the frames that arrived while the last one was being
        processed. Counts them all, processes the newest (without a warning per dropped frame)."""
        self._count_received(len(frames) - 1)
        return [self.callback(frames[-1])]

    def _count_received(self, n: int) -> None:
        now = time.perf_counter()
        with self._lock:
            self._received += n
        for _ in range(n):
            self._received_rate.tick(now)

    # --- script thread -------------------------------------------------------------------------------------------
    def latest(self) -> tuple[FrameResult | None, int, str | None]:
        with self._lock:
            return self._latest, self._frames, self._error

    def rates(self) -> dict:
        """Frames per second processed and received from the camera over the last seconds, read now (so a stalled
        stream reads as slowing down), and the totals."""
        now = time.perf_counter()
        with self._lock:
            frames, received = self._frames, self._received
        return {"processed_fps": self._processed_rate.rate(now), "received_fps": self._received_rate.rate(now),
                "processed": frames, "received": received}

    @property
    def recording(self) -> bool:
        with self._lock:
            return self._recorder is not None

    def start_recording(self, folder: str | Path, meta: dict | None = None) -> None:
        with self._lock:
            if self._recorder is None:
                self._recorder = Recorder(folder, meta=meta)

    def stop_recording(self) -> tuple[dict, Path] | None:
        """Close the recording; returns (summary, folder) or None when nothing was recording."""
        with self._lock:
            recorder, self._recorder = self._recorder, None
        if recorder is None:
            return None
        try:
            summary = recorder.close()
        except Exception as exc:  # noqa: BLE001 - the statistics still stand when the summary plot fails
            from patchlab.capture import summarize

            summary = {"recording": str(recorder.folder), "meta": recorder.meta,
                       "attack": summarize(recorder.records), "plot_error": f"{type(exc).__name__}: {exc}"}
        return summary, recorder.folder


def webrtc_session_available() -> bool:
    """True under a real Streamlit server; False under AppTest (no browser, so no WebRTC session to attach to)."""
    try:
        from streamlit_webrtc.session_info import get_this_session_info

        return get_this_session_info() is not None
    except Exception:  # noqa: BLE001 - AppTest's mocked runtime has no session manager
        return False


def stream_playing(ctx, key: str, session_state) -> bool:
    """Whether the browser's stream plays now: the context's state and the component's raw value must agree.

    streamlit-webrtc refreshes `ctx.state` only from the component's on_change callback. When STOP's value change
    reaches the server inside a timer-driven fragment run, that callback never fires and `ctx.state` stays
    "playing" for good; the raw value in session state is the browser's latest word either way.
    """
    if not ctx.state.playing:
        return False
    try:  # streamlit-webrtc's frontend key is an internal detail: without it, trust ctx.state
        from streamlit_webrtc.component import generate_frontend_component_key
    except ImportError:
        return True
    value = session_state.get(generate_frontend_component_key(key))
    return not isinstance(value, dict) or bool(value.get("playing", False))
