"""Draw the live classifier's read-out onto a BGR frame: top-5 with probability bars, the target bar, FPS, latency."""

from __future__ import annotations

import cv2
import numpy as np

FONT_SCALE = 0.45
LINE = 18
WHITE, GREEN, RED, YELLOW, CYAN = (255, 255, 255), (80, 220, 80), (70, 70, 240), (40, 220, 240), (230, 200, 60)


def _shade(frame: np.ndarray, x0: int, y0: int, x1: int, y1: int, keep: float = 0.35) -> None:
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 > x0 and y1 > y0:
        roi = frame[y0:y1, x0:x1]
        cv2.convertScaleAbs(roi, dst=roi, alpha=keep)


def _text(frame, text, org, colour=WHITE, scale=FONT_SCALE) -> None:
    cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def draw_quad(frame: np.ndarray, quad, colour=CYAN, thickness: int = 1) -> None:
    pts = np.round(np.asarray(quad, np.float64) * 4).astype(np.int32).reshape(-1, 1, 2)  # 2 fractional bits
    cv2.polylines(frame, [pts], True, colour, thickness, cv2.LINE_AA, shift=2)


def draw_overlay(frame: np.ndarray, result, roi_quad=None, markers: dict | None = None) -> np.ndarray:
    """Draw in place onto `frame` (BGR uint8) from a FrameResult; returns the frame."""
    h, w = frame.shape[:2]
    if markers:
        for corners in markers.values():
            draw_quad(frame, corners, GREEN, 1)
    if roi_quad is not None:
        draw_quad(frame, roi_quad, CYAN, 1)
    rows = result.top5
    panel_w = min(w, 300)
    _shade(frame, 0, 0, panel_w, 8 + LINE * len(rows) + 4)
    for k, row in enumerate(rows):
        y = 6 + LINE * k
        is_target = result.target_index is not None and row["index"] == result.target_index
        bar = int((panel_w - 12) * row["prob"])
        cv2.rectangle(frame, (6, y + 2), (6 + bar, y + LINE - 3), RED if is_target else (90, 90, 90), -1)
        _text(frame, f"{row['prob'] * 100:5.1f}% {row['label'][:30]}", (10, y + LINE - 6), YELLOW if k == 0 else WHITE)
    if getattr(result, "defense", None):
        y = 8 + LINE * len(rows) + 4
        cert = {True: "  CERTIFIED", False: "  not certified", None: ""}[result.certified]
        line = f"{result.defense}: {result.defended_label[:26]}{cert}"
        _shade(frame, 0, y, panel_w, y + LINE + 4)
        _text(frame, line, (10, y + LINE - 4), GREEN if result.certified else YELLOW)
    status = f"{result.fps:5.1f} FPS  {result.latency_ms:5.1f} ms"
    (tw, _), _ = cv2.getTextSize(status, cv2.FONT_HERSHEY_SIMPLEX, FONT_SCALE, 1)
    _shade(frame, w - tw - 12, 0, w, LINE + 6)
    _text(frame, status, (w - tw - 6, LINE - 2))
    if result.target_index is not None:
        y0 = h - 2 * LINE - 6
        _shade(frame, 0, y0, w, h)
        p = result.target_prob
        colour = RED if result.is_target else YELLOW
        cv2.rectangle(frame, (6, y0 + LINE + 2), (6 + int((w - 12) * p), h - 5), colour, -1)
        size = f"  patch {result.patch_size_px:.0f} px" if result.patch_size_px else ""
        hit = "  TOP-1" if result.is_target else ""
        _text(frame, f"target {result.target_label[:28]}: {p * 100:5.1f}%{hit}{size}", (8, y0 + LINE - 4))
    return frame
