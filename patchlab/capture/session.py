"""A live session: read frames from a source, process each, record, stop cleanly (end, max frames, Ctrl-C, failure).

The CLI and tests drive this; the Streamlit app calls `process_frame` directly from its WebRTC callback.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from patchlab.capture.pipeline import FrameResult, LiveState, process_frame
from patchlab.capture.recording import Recorder, summarize
from patchlab.errors import PatchlabError

# on_frame(annotated, result, source_status) -> False to stop
FrameHook = Callable[[np.ndarray, FrameResult, object], bool | None]


@dataclass
class SessionResult:
    frames: int
    seconds: float
    stopped: str                         # ended | max-frames | interrupted | stopped | failed
    error: str | None = None
    summary: dict = field(default_factory=dict)
    recording: Path | None = None
    source_info: dict = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@contextlib.contextmanager
def _sigint_sets(event: threading.Event):
    """In the main thread, Ctrl-C sets `event` (checked once per frame) instead of raising wherever it lands.

    A KeyboardInterrupt raised inside native code can be lost (we saw the camera CLI keep running after SIGINT);
    a flag checked at the frame boundary cannot, and the frame in flight is finished and recorded."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: event.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_session(source, state: LiveState, recorder: Recorder | None = None, max_frames: int | None = None,
                on_frame: FrameHook | None = None, baseline: str | Path | None = None,
                close_source: bool = True) -> SessionResult:
    """Process frames until the source ends, `max_frames`, `on_frame` returns False, Ctrl-C, or the source fails.

    Always closes the source (unless told not to) and the recorder, so the summary is written in every case.
    A source failure is reported in the result (`stopped='failed'`, `error`), not raised.
    """
    frames, stopped, error = 0, "ended", None
    results: list[dict] = []
    start = time.perf_counter()
    interrupted = threading.Event()
    try:
        with _sigint_sets(interrupted):
            while max_frames is None or frames < max_frames:
                if interrupted.is_set():
                    raise KeyboardInterrupt
                frame = source.read()
                if frame is None:
                    stopped = "ended"
                    break
                annotated, result = process_frame(frame, state)
                frames += 1
                if recorder is not None:
                    recorder.write(result)
                else:
                    results.append(result.as_dict())
                if on_frame is not None and on_frame(annotated, result, source.status()) is False:
                    stopped = "stopped"
                    break
            else:
                stopped = "max-frames"
    except KeyboardInterrupt:
        stopped = "interrupted"
    except PatchlabError as exc:
        stopped, error = "failed", str(exc)
    finally:
        seconds = time.perf_counter() - start
        info = dict(getattr(source, "info", {}) or {})
        if close_source:
            source.close()
    if recorder is not None:
        recorder.meta.update({"stopped": stopped, "error": error})
        summary = recorder.close(baseline=baseline)
    else:
        summary = {"attack": summarize(results)}
    return SessionResult(frames, seconds, stopped, error, summary, recorder.folder if recorder else None, info)
