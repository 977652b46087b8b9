"""Read any common image file into an RGB float tensor in [0, 1], with one-line errors."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from patchlab.errors import PatchlabError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
MAX_PIXELS = 100_000_000  # decompression-bomb guard (PIL's default is ~89 MP and only warns)
MAX_FILE_BYTES = 200 * 1024 * 1024


def _pil_to_rgb_array(img: Image.Image) -> np.ndarray:
    """Any PIL mode (L, LA, P, RGBA, I;16, I, F, CMYK) -> float32 HxWx3 in [0, 1]."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        arr = arr / (65535.0 if arr.max() > 255 else 255.0)
        arr = np.repeat(arr[..., None], 3, axis=2)
        return np.clip(arr, 0, 1)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        arr = np.repeat(np.clip(arr / max(float(arr.max()), 1.0), 0, 1)[..., None], 3, axis=2)
        return arr
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return arr


def open_pil(source: str | Path | bytes, name: str | None = None) -> Image.Image:
    """Open and fully decode an image (EXIF orientation applied), or raise a one-line error."""
    label = name or (str(source) if not isinstance(source, bytes) else "uploaded image")
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise PatchlabError(f"{label}: no such file")
        if path.is_dir():
            raise PatchlabError(f"{label}: is a folder, not an image")
        size = path.stat().st_size
        if size == 0:
            raise PatchlabError(f"{label}: empty file")
        if size > MAX_FILE_BYTES:
            raise PatchlabError(f"{label}: file is {size / 1e6:.0f} MB, over the {MAX_FILE_BYTES // 10**6} MB limit")
        data = path.read_bytes()
    else:
        data = bytes(source)
        if not data:
            raise PatchlabError(f"{label}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise PatchlabError(f"{label}: {w}x{h} pixels is over the {MAX_PIXELS // 10**6} MP limit (decompression-bomb guard)")
            img.load()
            img = ImageOps.exif_transpose(img)
    except PatchlabError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PatchlabError(f"{label}: image too large (decompression-bomb guard)") from None
    except UnidentifiedImageError:
        raise PatchlabError(f"{label}: not an image file, or an unsupported format") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise PatchlabError(f"{label}: corrupt or truncated image ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    return img


def read_image(source: str | Path | bytes, name: str | None = None) -> torch.Tensor:
    """Return an RGB float tensor (3, H, W) in [0, 1]. Alpha is composited over white."""
    arr = _pil_to_rgb_array(open_pil(source, name))
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()


def read_image_rgba(source: str | Path | bytes, name: str | None = None) -> torch.Tensor:
    """Return an RGBA float tensor (4, H, W) in [0, 1]; opaque images get alpha 1."""
    img = open_pil(source, name)
    if img.mode not in ("RGBA", "LA", "PA") and not (img.mode == "P" and "transparency" in img.info):
        rgb = torch.from_numpy(np.ascontiguousarray(_pil_to_rgb_array(img))).permute(2, 0, 1)
        return torch.cat([rgb, torch.ones_like(rgb[:1])], 0)
    arr = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()


def to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    """(3|4, H, W) float in [0, 1] -> HxWxC uint8 (rounded, lossless round-trip of 8-bit values)."""
    return (image.detach().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy())


def png_bytes(image: torch.Tensor | np.ndarray, dpi: float | None = None, kind: str | None = None,
              written_by: str | None = None) -> bytes:
    """A (3|4, H, W) tensor in [0, 1] (or an HxWx3|4 uint8 array) as lossless PNG bytes, optionally with DPI and
    the artifact tag of `kind` (see patchlab.artifacts)."""
    from patchlab.artifacts import png_info

    arr = image if isinstance(image, np.ndarray) else to_uint8_hwc(image)
    pil = Image.fromarray(arr, mode="RGBA" if arr.shape[2] == 4 else "RGB")
    kwargs: dict = {"dpi": (dpi, dpi)} if dpi else {}
    info = png_info(kind, written_by)
    if info is not None:
        kwargs["pnginfo"] = info
    buf = io.BytesIO()
    pil.save(buf, format="PNG", **kwargs)
    return buf.getvalue()


def save_image(image: torch.Tensor | np.ndarray, path: str | Path, dpi: float | None = None, kind: str | None = None,
               written_by: str | None = None) -> Path:
    """Save a (3|4, H, W) tensor in [0, 1] as a lossless PNG (RGB or RGBA), optionally with DPI metadata and the
    artifact tag of `kind`. Written atomically: a kill leaves the previous file or the new one, never half of one."""
    from patchlab.artifacts import tag_jpeg_bytes, write_bytes

    fmt = Image.registered_extensions().get(Path(path).suffix.lower(), "PNG")
    if fmt == "PNG":
        return write_bytes(path, png_bytes(image, dpi, kind, written_by))
    arr = image if isinstance(image, np.ndarray) else to_uint8_hwc(image)  # another format the name asks for
    pil = Image.fromarray(arr[..., :3] if fmt == "JPEG" else arr)
    buf = io.BytesIO()
    pil.save(buf, format=fmt, **({"dpi": (dpi, dpi)} if dpi else {}), **({"quality": 95} if fmt == "JPEG" else {}))
    data = buf.getvalue()
    return write_bytes(path, tag_jpeg_bytes(data, kind, written_by) if kind and fmt == "JPEG" else data)


def list_images(folder: str | Path) -> list[Path]:
    """Image files in a folder (not recursive), sorted; a one-line error if none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PatchlabError(f"{folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise PatchlabError(f"{folder}: no images found ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files
