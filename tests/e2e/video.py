"""The fake camera's .y4m: Chromium loops this file as the webcam (no ffmpeg needed to write it)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def write_y4m(path: Path, frames_bgr: list[np.ndarray], fps: int = 15) -> Path:
    """YUV4MPEG2 4:2:0: a header, then per frame `FRAME\\n` and the I420 planes."""
    h, w = frames_bgr[0].shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames_bgr:
            f.write(b"FRAME\n")
            f.write(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path



SHIPPED_PATCH = Path(__file__).resolve().parents[2] / "printables" / "toaster_efficientnet_lite0.png"


def make_patch_scene_video(path: Path, n_frames: int = 45, size: tuple[int, int] = (480, 360), fps: int = 15) -> Path:
    """The capture pipeline's synthetic scene: the printed toaster patch on a sheet with ArUco corner markers,
    moving in front of a built-in photo, written as .y4m for Chromium's fake camera. 480x360 keeps the VP8 stream
    small: on a starved CPU, loopback UDP drops packets of bigger frames and the decoded video turns to garbage."""
    from patchlab.capture import load_patch
    from patchlab.simulate import SyntheticScene

    if not SHIPPED_PATCH.is_file():
        raise FileNotFoundError(f"{SHIPPED_PATCH} is missing (see printables/README.md to regenerate it)")
    scene = SyntheticScene(patch=load_patch(SHIPPED_PATCH), size=size, fps=fps)
    return write_y4m(path, [scene.frame(i).image for i in range(n_frames)], fps)
