"""`patchlab print`: a patch PDF at exact physical size (markers, QR, scale bar) plus a PNG at a chosen DPI."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from patchlab.artifacts import check_outputs, default_path, write_bytes
from patchlab.errors import PatchlabError
from patchlab.physical.layout import Page, mm_to_px, write_pdf
from patchlab.physical.sheets import SheetManifest, patch_manifest, patch_pages, sheet_id_for

MAX_PNG_PIXELS = 60_000_000
WRITER = "patchlab print"


@dataclass
class PrintResult:
    pdf: bytes
    manifest: SheetManifest
    pages: list[Page]
    png: bytes | None = None
    png_px: tuple[int, int] | None = None
    files: dict = field(default_factory=dict)

    def summary(self) -> dict:
        out = {"sheet_id": self.manifest.sheet_id, "paper": self.manifest.paper, "pages": self.manifest.n_pages,
               "copies": [{"page": c.page, "rect_mm": list(c.rect_mm)} for c in self.manifest.cells]}
        if self.png_px:
            out["png_px"] = list(self.png_px)
        out.update({k: str(v) for k, v in self.files.items()})
        return out


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("name") or value.get("label") or value.get("index")
    return None if value is None else str(value)


def load_patch_rgba(source: str | Path | bytes | torch.Tensor | np.ndarray, meta: dict | None = None,
                    name: str | None = None) -> tuple[np.ndarray, dict]:
    """A patch as HxWx4 uint8 plus its metadata (sidecar JSON next to a PNG path, or `meta`)."""
    from patchlab.data import read_image_rgba, to_uint8_hwc

    meta = dict(meta or {})
    if isinstance(source, (str, Path)):
        from patchlab.patch.io import load_patch

        path = Path(source)
        rgba, sidecar = load_patch(path)
        meta = meta or sidecar
        meta.setdefault("patch", path.stem)
    elif isinstance(source, bytes):
        rgba = read_image_rgba(source, name=name)
    elif isinstance(source, torch.Tensor):
        rgba = source if source.shape[0] == 4 else torch.cat([source, torch.ones_like(source[:1])], 0)
    else:
        arr = np.asarray(source)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise PatchlabError("a patch array must be HxWx3|4 uint8")
        if arr.shape[2] == 3:
            arr = np.concatenate([arr, np.full(arr.shape[:2] + (1,), 255, np.uint8)], 2)
        return arr, {"patch": name or "patch", **meta}
    meta.setdefault("patch", name or "patch")
    return to_uint8_hwc(rgba), meta


def print_patch(source, size_mm: float = 100.0, paper: str = "a4", copies_sizes: list[float] | None = None,
                png_dpi: float | None = 300.0, meta: dict | None = None, name: str | None = None) -> PrintResult:
    """Lay out a patch at exact size (width = size_mm; height keeps the aspect) with markers, QR and scale bar."""
    if not size_mm or size_mm <= 0:
        raise PatchlabError(f"size_mm={size_mm:g} is not positive")
    rgba, meta = load_patch_rgba(source, meta, name)
    h, w = rgba.shape[:2]
    aspect = h / w
    sizes = [float(s) for s in (copies_sizes or [size_mm])]
    if any(s <= 0 for s in sizes):
        raise PatchlabError(f"copy sizes must be positive, got {sizes}")
    models = meta.get("models")
    model = meta.get("model") or (models[0] if isinstance(models, list) and len(models) == 1 else
                                  ",".join(map(str, models)) if isinstance(models, list) else None)
    patch_meta = {"patch": _text(meta.get("patch")) or "patch",
                  "target": _text(meta.get("target_name") or meta.get("target")), "model": _text(model)}
    sid = sheet_id_for(rgba.tobytes(), sizes, paper.lower(), patch_meta)
    manifest = patch_manifest(sizes, paper, aspect, patch_meta, sid)
    pages = patch_pages(rgba, manifest)
    pdf = write_pdf(pages, title=f"patchlab patch sheet {sid}", written_by=WRITER)
    png = png_px = None
    if png_dpi:
        pw, ph = mm_to_px(size_mm, png_dpi), mm_to_px(size_mm * aspect, png_dpi)
        if pw * ph > MAX_PNG_PIXELS:
            raise PatchlabError(f"{size_mm:g} mm at {png_dpi:g} dpi is {pw}x{ph} px; choose a lower dpi=")
        from patchlab.data import png_bytes

        pil = Image.fromarray(rgba, "RGBA").resize((pw, ph), Image.LANCZOS)
        png, png_px = png_bytes(np.asarray(pil), png_dpi, "print-png", WRITER), (pw, ph)
    return PrintResult(pdf=pdf, manifest=manifest, pages=pages, png=png, png_px=png_px)


def print_paths(out_pdf: str | Path, png_out: str | Path | None = None,
                manifest_out: str | Path | None = None, png: bool = True) -> dict[Path, str]:
    """{path: artifact kind} of what save_print writes: <out>.pdf, <out>.sheet.json and <out>.print.png."""
    out_pdf = Path(out_pdf)
    paths = {out_pdf: "sheet-pdf",
             Path(manifest_out) if manifest_out else default_path(out_pdf, "sheet-manifest"): "sheet-manifest"}
    if png:
        paths[Path(png_out) if png_out else default_path(out_pdf, "print-png")] = "print-png"
    return paths


def save_print(result: PrintResult, out_pdf: str | Path, png_out: str | Path | None = None,
               manifest_out: str | Path | None = None, force: bool = False) -> PrintResult:
    """Write the PDF, its manifest and (when made) the print PNG, each atomically, after checking that none of the
    paths holds anything but an earlier `patchlab print` output (replaced only with `force`)."""
    paths = print_paths(out_pdf, png_out, manifest_out, result.png is not None)
    check_outputs(paths, WRITER, force)
    (pdf_path, manifest_path, *png_path) = paths
    write_bytes(pdf_path, result.pdf)
    result.files["pdf"] = pdf_path
    result.manifest.to_json(manifest_path)
    result.files["manifest"] = manifest_path
    if png_path:
        write_bytes(png_path[0], result.png)
        result.files["png"] = png_path[0]
    return result
