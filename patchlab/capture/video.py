"""Write BGR frames to a video file: .y4m (what Chromium's fake camera reads), .avi (MJPG) or .mp4 (mp4v)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from patchlab.errors import PatchlabError


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
