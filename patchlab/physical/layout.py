"""One page description, two renderers: a PDF (reportlab, exact mm geometry) and a raster at any resolution.

Everything on a page is a filled rectangle, an image or a line of text, positioned in mm from the page's top-left
corner. Markers, QR modules, swatches and the scale bar are drawn as vector rectangles, so their printed geometry
is exact; images are embedded losslessly (Flate) at their native pixels and placed at an exact mm rectangle.
The raster renderer computes exact area coverage for rectangles and box-filters images, so it matches the PDF
geometrically (images to half a raster pixel; text differs only in font rasterisation). `render_pdf_page` rasterises the PDF itself with poppler's pdftoppm.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from patchlab.errors import PatchlabError
from patchlab.physical.markers import MARKER_CELLS, MarkerSpec, marker_bits

MM_PER_INCH = 25.4
PT_PER_MM = 72.0 / MM_PER_INCH
PAPER_MM = {"a4": (210.0, 297.0), "letter": (215.9, 279.4), "a3": (297.0, 420.0)}


def paper_size(name: str) -> tuple[float, float]:
    key = str(name).lower()
    if key not in PAPER_MM:
        raise PatchlabError(f"unknown paper '{name}'; choose from {', '.join(PAPER_MM)}")
    return PAPER_MM[key]


def mm_to_px(mm: float, dpi: float) -> int:
    """Pixels needed for a length in mm at a DPI (the rule the PNG export and EOT scale use)."""
    return max(1, int(round(mm / MM_PER_INCH * dpi)))


@dataclass
class RectItem:
    rect_mm: tuple[float, float, float, float]  # x, y, w, h
    rgb: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass
class ImageItem:
    rect_mm: tuple[float, float, float, float]
    pixels: np.ndarray  # H x W x 3|4 uint8, RGB(A); alpha = shape
    name: str = "image"


@dataclass
class TextItem:
    x_mm: float
    y_mm: float          # baseline
    text: str
    size_pt: float = 9.0
    align: str = "left"  # left | centre | right


@dataclass
class Page:
    width_mm: float
    height_mm: float
    rects: list[RectItem] = field(default_factory=list)
    images: list[ImageItem] = field(default_factory=list)
    texts: list[TextItem] = field(default_factory=list)
    markers: list[MarkerSpec] = field(default_factory=list)

    @property
    def size_mm(self) -> tuple[float, float]:
        return self.width_mm, self.height_mm

    def add_rect(self, x: float, y: float, w: float, h: float, rgb=(0.0, 0.0, 0.0)) -> None:
        self.rects.append(RectItem((float(x), float(y), float(w), float(h)), tuple(float(c) for c in rgb)))

    def add_text(self, x: float, y: float, text: str, size_pt: float = 9.0, align: str = "left") -> None:
        self.texts.append(TextItem(float(x), float(y), text, size_pt, align))

    def add_image(self, x: float, y: float, w: float, h: float, pixels: np.ndarray, name: str = "image") -> None:
        arr = np.asarray(pixels)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise PatchlabError(f"page images must be HxWx3|4 uint8, got {arr.dtype} {arr.shape}")
        self.images.append(ImageItem((float(x), float(y), float(w), float(h)), arr, name))

    def add_marker(self, marker_id: int, x: float, y: float, size: float) -> None:
        """A marker's black square at (x, y) mm; keep >= 1 cell of white around it."""
        self.markers.append(MarkerSpec(int(marker_id), float(x), float(y), float(size)))
        cell = size / MARKER_CELLS
        for r0, c0, run in _runs(marker_bits(marker_id)):
            self.add_rect(x + c0 * cell, y + r0 * cell, run * cell, cell)

    def add_module_grid(self, x: float, y: float, module_mm: float, dark: np.ndarray) -> None:
        """A grid of dark modules (QR code), merged into horizontal runs."""
        for r0, c0, run in _runs(dark):
            self.add_rect(x + c0 * module_mm, y + r0 * module_mm, run * module_mm, module_mm)


def _runs(dark: np.ndarray):
    """Horizontal runs of True cells: (row, col, length)."""
    dark = np.asarray(dark, dtype=bool)
    for r, row in enumerate(dark):
        c = 0
        while c < len(row):
            if row[c]:
                start = c
                while c < len(row) and row[c]:
                    c += 1
                yield r, start, c - start
            else:
                c += 1


# -- PDF ---------------------------------------------------------------------------------------------------------------
def write_pdf(pages: list[Page], path: str | Path | None = None, title: str = "patchlab sheet",
              written_by: str | None = None) -> bytes:
    """Write pages to a PDF (returns the bytes; also saved atomically to `path` when given). With `written_by` the
    PDF's Keywords carry the artifact tag (kind sheet-pdf) that `patchlab.artifacts.identify` reads back."""
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    if not pages:
        raise PatchlabError("nothing to print: no pages")
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=(pages[0].width_mm * PT_PER_MM, pages[0].height_mm * PT_PER_MM),
                      pageCompression=1, invariant=1)
    c.setTitle(title)
    c.setCreator("patchlab")
    if written_by:
        import json

        from patchlab.artifacts import tag

        c.setKeywords(json.dumps(tag("sheet-pdf", written_by)))
    for page in pages:
        W, H = page.width_mm * PT_PER_MM, page.height_mm * PT_PER_MM
        c.setPageSize((W, H))
        for item in page.images:
            x, y, w, h = item.rect_mm
            mode = "RGBA" if item.pixels.shape[2] == 4 else "RGB"
            reader = ImageReader(Image.fromarray(item.pixels, mode))
            c.drawImage(reader, x * PT_PER_MM, H - (y + h) * PT_PER_MM, w * PT_PER_MM, h * PT_PER_MM,
                        mask="auto" if mode == "RGBA" else None)
        current = None
        for item in page.rects:
            if item.rgb != current:
                c.setFillColorRGB(*item.rgb)
                current = item.rgb
            x, y, w, h = item.rect_mm
            c.rect(x * PT_PER_MM, H - (y + h) * PT_PER_MM, w * PT_PER_MM, h * PT_PER_MM, stroke=0, fill=1)
        c.setFillColorRGB(0, 0, 0)
        for t in page.texts:
            c.setFont("Helvetica", t.size_pt)
            draw = {"left": c.drawString, "centre": c.drawCentredString, "right": c.drawRightString}[t.align]
            draw(t.x_mm * PT_PER_MM, H - t.y_mm * PT_PER_MM, t.text)
        c.showPage()
    c.save()
    data = buf.getvalue()
    if path is not None:
        from patchlab.artifacts import write_bytes

        write_bytes(path, data)
    return data


def render_pdf_page(pdf: str | Path, dpi: float, page: int = 0) -> np.ndarray:
    """Rasterise one PDF page with poppler's pdftoppm -> H x W x 3 uint8 RGB."""
    exe = shutil.which("pdftoppm")
    if exe is None:
        raise PatchlabError("pdftoppm (poppler-utils) is not installed; use render_page() on the layout instead")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "page"
        proc = subprocess.run([exe, "-r", f"{dpi:g}", "-f", str(page + 1), "-l", str(page + 1), "-png", "-singlefile",
                               str(pdf), str(out)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise PatchlabError(f"pdftoppm failed on {pdf}: {proc.stderr.strip().splitlines()[-1] if proc.stderr else proc.returncode}")
        return np.asarray(Image.open(out.with_suffix(".png")).convert("RGB"))


# -- raster ------------------------------------------------------------------------------------------------------------
def _coverage(lo: float, hi: float, n: int) -> tuple[int, np.ndarray]:
    """Fractional coverage of pixels [i, i+1) by the interval [lo, hi) (pixel-edge units)."""
    i0 = max(0, int(np.floor(lo)))
    i1 = min(n, int(np.ceil(hi)))
    if i1 <= i0:
        return i0, np.zeros(0)
    edges = np.arange(i0, i1 + 1, dtype=np.float64)
    cov = np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0, 1)
    return i0, cov


def _font(px: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=max(6, px))
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def render_page(page: Page, px_per_mm: float | None = None, dpi: float | None = None, text: bool = True) -> np.ndarray:
    """Rasterise a page -> H x W x 3 uint8 RGB, with exact area anti-aliasing. Give px_per_mm or dpi."""
    if (px_per_mm is None) == (dpi is None):
        raise PatchlabError("render_page needs exactly one of px_per_mm or dpi")
    s = float(px_per_mm if px_per_mm is not None else dpi / MM_PER_INCH)
    Wp, Hp = int(round(page.width_mm * s)), int(round(page.height_mm * s))
    canvas = np.ones((Hp, Wp, 3), dtype=np.float32)
    for item in page.images:
        _blit_image(canvas, item, s)
    for item in page.rects:
        x, y, w, h = item.rect_mm
        c0, cx = _coverage(x * s, (x + w) * s, Wp)
        r0, cy = _coverage(y * s, (y + h) * s, Hp)
        if cx.size == 0 or cy.size == 0:
            continue
        a = (cy[:, None] * cx[None, :])[..., None].astype(np.float32)
        region = canvas[r0:r0 + cy.size, c0:c0 + cx.size]
        region *= 1 - a
        region += a * np.asarray(item.rgb, dtype=np.float32)
    out = (np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8)
    if text and page.texts:
        pil = Image.fromarray(out)
        draw = ImageDraw.Draw(pil)
        for t in page.texts:
            px = int(round(t.size_pt / PT_PER_MM * s))
            anchor = {"left": "ls", "centre": "ms", "right": "rs"}[t.align]
            try:
                draw.text((t.x_mm * s, t.y_mm * s), t.text, fill=(0, 0, 0), font=_font(px), anchor=anchor)
            except ValueError:  # bitmap fallback font has no anchors
                draw.text((t.x_mm * s, t.y_mm * s - px), t.text, fill=(0, 0, 0), font=_font(px))
        out = np.asarray(pil)
    return out


def _blit_image(canvas: np.ndarray, item: ImageItem, s: float) -> None:
    """Composite an image into its mm rect with exact box filtering: each raster pixel is the area-weighted mean of
    the image pixels it covers (what a fine printer's output looks like to a coarser sensor); edges are
    anti-aliased by their exact coverage. Positions are exact to half a raster pixel."""
    Hp, Wp = canvas.shape[:2]
    x, y, w, h = item.rect_mm
    x0, x1, y0, y1 = x * s, (x + w) * s, y * s, (y + h) * s
    c0, cx = _coverage(x0, x1, Wp)
    r0, cy = _coverage(y0, y1, Hp)
    if cx.size == 0 or cy.size == 0:
        return
    src = item.pixels.astype(np.float32) / 255.0
    # the image spans [x0, x1): sample it on the covered pixel grid [c0, c0 + len(cx)) by area
    full_w, full_h = int(round(x1 - x0)), int(round(y1 - y0))
    full_w, full_h = max(1, full_w), max(1, full_h)
    resized = cv2.resize(src, (full_w, full_h), interpolation=cv2.INTER_AREA)
    if resized.ndim == 2:
        resized = resized[..., None]
    off_x, off_y = int(round(x0)) - c0, int(round(y0)) - r0
    warped = np.zeros((cy.size, cx.size, resized.shape[2]), np.float32)
    ys0, xs0 = max(0, off_y), max(0, off_x)
    ys1, xs1 = min(cy.size, off_y + full_h), min(cx.size, off_x + full_w)
    warped[ys0:ys1, xs0:xs1] = resized[ys0 - off_y:ys1 - off_y, xs0 - off_x:xs1 - off_x]
    # fill any rounding gap at the far edges by replication
    if xs1 < cx.size:
        warped[:, xs1:] = warped[:, xs1 - 1:xs1]
    if ys1 < cy.size:
        warped[ys1:] = warped[ys1 - 1:ys1]
    if xs0 > 0:
        warped[:, :xs0] = warped[:, xs0:xs0 + 1]
    if ys0 > 0:
        warped[:ys0] = warped[ys0:ys0 + 1]
    a = (cy[:, None] * cx[None, :]).astype(np.float32)[..., None]
    if warped.shape[2] == 4:
        a = a * warped[..., 3:4]
    region = canvas[r0:r0 + cy.size, c0:c0 + cx.size]
    region *= 1 - a
    region += a * warped[..., :3]


def page_image_bytes(rgb: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt)
    return buf.getvalue()
