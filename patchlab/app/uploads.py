"""Validate uploaded files before anything decodes them: type, size, then a guarded decode.

Every failure is a `PatchlabError` with one line the page shows with `st.error`; nothing here unpickles.
"""

from __future__ import annotations

from pathlib import PurePath

import torch

from patchlab.data import read_image, read_image_rgba
from patchlab.errors import PatchlabError

MAX_UPLOAD_MB = 25  # also the server's maxUploadSize in .streamlit/config.toml
IMAGE_TYPES = ("png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff")

# magic bytes -> format, checked against the extension so a renamed file is caught before decoding
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"RIFF", "webp"), (b"BM", "bmp"),
    (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"),
)
_ALIASES = {"jpg": "jpeg", "tif": "tiff"}


def sniff_image_format(data: bytes) -> str | None:
    for magic, fmt in _MAGIC:
        if data.startswith(magic) and (fmt != "webp" or data[8:12] == b"WEBP"):
            return fmt
    return None


def check_upload(name: str, data: bytes, types: tuple[str, ...] = IMAGE_TYPES, max_mb: float = MAX_UPLOAD_MB) -> bytes:
    """Type (extension and content) and size checks; returns the bytes."""
    ext = PurePath(name).suffix.lower().lstrip(".")
    if ext not in types:
        raise PatchlabError(f"{name}: unsupported file type '.{ext or '?'}'; upload one of {', '.join('.' + t for t in types)}")
    if not data:
        raise PatchlabError(f"{name}: the file is empty")
    if len(data) > max_mb * 1024 * 1024:
        raise PatchlabError(f"{name}: {len(data) / 2**20:.1f} MB is over the {max_mb:g} MB upload limit")
    if ext in IMAGE_TYPES:
        fmt = sniff_image_format(data)
        if fmt is None:
            raise PatchlabError(f"{name}: not a valid image (the content is not {_ALIASES.get(ext, ext).upper()} data)")
        if fmt != _ALIASES.get(ext, ext):
            raise PatchlabError(f"{name}: the file says .{ext} but holds {fmt.upper()} data; re-export it")
    return data


def _name_and_bytes(upload) -> tuple[str, bytes]:
    """Accept a Streamlit UploadedFile (or anything with .name and .getvalue()) or a (name, bytes) pair."""
    if isinstance(upload, tuple):
        return upload[0], bytes(upload[1])
    return getattr(upload, "name", "upload"), bytes(upload.getvalue())


def read_uploaded_json(upload, max_mb: float = 5, what: str = "a JSON object") -> dict:
    """A validated upload of a JSON object (a manifest, a sidecar); nothing is unpickled."""
    import json

    name, data = _name_and_bytes(upload)
    try:
        obj = json.loads(check_upload(name, data, ("json",), max_mb).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise PatchlabError(f"{name}: not valid JSON") from None
    if not isinstance(obj, dict):
        raise PatchlabError(f"{name}: not {what}")
    return obj


def read_uploaded_image(upload, max_mb: float = MAX_UPLOAD_MB) -> torch.Tensor:
    """A validated upload as an RGB (3, H, W) tensor in [0, 1]."""
    name, data = _name_and_bytes(upload)
    return read_image(check_upload(name, data, IMAGE_TYPES, max_mb), name=name)


def read_uploaded_rgba(upload, max_mb: float = MAX_UPLOAD_MB) -> torch.Tensor:
    """A validated upload as an RGBA (4, H, W) tensor (patch PNGs keep their alpha shape)."""
    name, data = _name_and_bytes(upload)
    return read_image_rgba(check_upload(name, data, IMAGE_TYPES, max_mb), name=name)
