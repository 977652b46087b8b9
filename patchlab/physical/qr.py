"""QR codes carrying sheet metadata: made with segno, read with OpenCV (plain and ArUco-based detectors)."""

from __future__ import annotations

import json

import cv2
import numpy as np

from patchlab.errors import PatchlabError
from patchlab.physical.markers import to_gray_uint8

QR_PREFIX = "PL1"
# Short keys keep the symbol small (version 6, 41 modules, for a typical patch sheet) so it reads in photos.
SHORT_KEYS = {"kind": "k", "sheet": "s", "paper": "pa", "page": "pg", "pages": "n", "patch": "p", "size_mm": "mm",
              "target": "t", "model": "m", "levels": "lv", "aspect": "as"}
LONG_KEYS = {v: k for k, v in SHORT_KEYS.items()}


def encode_payload(meta: dict) -> str:
    """Compact text for the QR: 'PL1' + JSON without spaces, with the short keys of SHORT_KEYS."""
    short = {SHORT_KEYS.get(k, k): v for k, v in meta.items()}
    return QR_PREFIX + json.dumps(short, separators=(",", ":"), sort_keys=True)


def decode_payload(text: str) -> dict | None:
    """The metadata dict (long keys) from a QR text made by encode_payload, or None."""
    if not text or not text.startswith(QR_PREFIX):
        return None
    try:
        value = json.loads(text[len(QR_PREFIX):])
    except json.JSONDecodeError:
        return None
    return {LONG_KEYS.get(k, k): v for k, v in value.items()} if isinstance(value, dict) else None


def qr_modules(text: str, error: str = "l") -> np.ndarray:
    """The QR symbol as a (n, n) bool array of dark modules, without quiet zone.

    The smallest version that holds the text is used (large modules read best in photos); segno then raises the
    error-correction level as far as that version allows."""
    import segno

    try:
        code = segno.make(text, error=error, micro=False, boost_error=True)
    except Exception as exc:  # segno raises DataOverflowError for oversize payloads
        raise PatchlabError(f"QR payload of {len(text)} characters does not fit: {exc}") from None
    return np.array([[bool(v) for v in row] for row in code.matrix], dtype=bool)


def _detectors():
    yield cv2.QRCodeDetector()
    if hasattr(cv2, "QRCodeDetectorAruco"):
        yield cv2.QRCodeDetectorAruco()


def read_qr(image: np.ndarray, max_side: int = 2000) -> str | None:
    """Decode one QR code from a gray/BGR image; try both OpenCV detectors and a few scales. None if unreadable."""
    gray = to_gray_uint8(image)
    h, w = gray.shape
    scales = [min(1.0, max_side / max(h, w))]
    if max(h, w) < 600:
        scales.append(min(4.0, 900 / max(h, w)))
    for scale in scales:
        img = gray if scale == 1.0 else cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                   interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        for det in _detectors():
            try:
                text, points, _ = det.detectAndDecode(img)
            except cv2.error:
                continue
            if text:
                return text
    return None


def read_payload(image: np.ndarray) -> dict | None:
    """The patchlab metadata dict from an image showing a patchlab QR, or None."""
    return decode_payload(read_qr(image) or "")
