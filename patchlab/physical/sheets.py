"""Printable sheets: the common page frame (markers, QR, 100 mm scale bar, print instruction), the manifest format,
and the patch sheet (a patch at exact physical size, optionally several sizes)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from patchlab.errors import PatchlabError
from patchlab.physical.layout import Page, paper_size
from patchlab.physical.markers import MarkerSpec
from patchlab.physical.qr import encode_payload, qr_modules

MANIFEST_VERSION = 1
MARGIN_MM = 8.0          # keeps everything inside most printers' printable area
MARKER_MM = 20.0         # side of each marker's black square
QR_MM = 40.0             # side of the QR symbol (modules only; white quiet zone around it)
QR_X_MM = MARGIN_MM + MARKER_MM + 6.0
HEADER_BOTTOM_MM = MARGIN_MM + QR_MM + 6.0   # content starts below the header band
FOOTER_MM = 36.0                             # content ends this far above the bottom edge
SCALE_BAR_MM = 100.0
PRINT_INSTRUCTION = "Print at Actual size / 100%, no scaling. The bar must measure 100 mm."


def marker_layout(page_mm: tuple[float, float]) -> list[MarkerSpec]:
    """The four page markers: ids 0 TL, 1 TR, 2 BR, 3 BL, each MARGIN_MM from the page edges."""
    w, h = page_mm
    far_x, far_y = w - MARGIN_MM - MARKER_MM, h - MARGIN_MM - MARKER_MM
    return [MarkerSpec(0, MARGIN_MM, MARGIN_MM, MARKER_MM), MarkerSpec(1, far_x, MARGIN_MM, MARKER_MM),
            MarkerSpec(2, far_x, far_y, MARKER_MM), MarkerSpec(3, MARGIN_MM, far_y, MARKER_MM)]


def qr_rect(page_mm: tuple[float, float] | None = None) -> tuple[float, float, float, float]:
    """Where the QR sits (the same on every paper size: next to the top-left marker)."""
    return (QR_X_MM, MARGIN_MM, QR_MM, QR_MM)


def content_rect(page_mm: tuple[float, float]) -> tuple[float, float, float, float]:
    w, h = page_mm
    return (MARGIN_MM, HEADER_BOTTOM_MM, w - 2 * MARGIN_MM, h - FOOTER_MM - HEADER_BOTTOM_MM)


def scale_bar_rect(page_mm: tuple[float, float]) -> tuple[float, float, float, float]:
    w, h = page_mm
    return (QR_X_MM, h - MARGIN_MM - 17.0, SCALE_BAR_MM, 3.0)


def frame_page(paper: str, qr_meta: dict, lines: list[str]) -> Page:
    """A page with the 4 markers, the QR code, the 100 mm scale bar, header lines and the print instruction."""
    page_mm = paper_size(paper)
    page = Page(*page_mm)
    for m in marker_layout(page_mm):
        page.add_marker(m.id, m.x_mm, m.y_mm, m.size_mm)
    modules = qr_modules(encode_payload(qr_meta))
    x, y, side, _ = qr_rect(page_mm)
    page.add_module_grid(x, y, side / modules.shape[0], modules)
    tx = x + side + 6.0
    for i, line in enumerate(lines[:6]):
        page.add_text(tx, y + 4.0 + 5.0 * i, line, size_pt=10 if i == 0 else 8)
    bx, by, bw, bh = scale_bar_rect(page_mm)
    segment = bw / 10
    page.add_rect(bx, by + bh, bw, 0.3)                     # baseline
    for k in range(10):
        if k % 2 == 0:
            page.add_rect(bx + k * segment, by, segment, bh)
    for k in range(11):                                     # ticks every 10 mm below the bar
        page.add_rect(bx + k * segment - 0.15, by + bh, 0.3, 1.5 if k % 5 else 2.5)
    page.add_text(bx, by + bh + 6.0, "0", size_pt=7, align="centre")
    page.add_text(bx + bw / 2, by + bh + 6.0, "50", size_pt=7, align="centre")
    page.add_text(bx + bw, by + bh + 6.0, "100 mm", size_pt=7, align="centre")
    page.add_text(bx, page_mm[1] - MARGIN_MM - 2.0, PRINT_INSTRUCTION, size_pt=8)
    return page


@dataclass
class Cell:
    """One region of a sheet: a patch copy, an image of a Kurakin grid, or a colour swatch."""
    id: str
    page: int
    rect_mm: tuple[float, float, float, float]
    kind: str                 # patch | image | swatch
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"id": self.id, "page": self.page, "rect_mm": [round(v, 4) for v in self.rect_mm], "kind": self.kind,
                **self.meta}

    @classmethod
    def from_dict(cls, d: dict) -> "Cell":
        d = dict(d)
        return cls(id=str(d.pop("id")), page=int(d.pop("page")), rect_mm=tuple(float(v) for v in d.pop("rect_mm")),
                   kind=str(d.pop("kind")), meta=d)


@dataclass
class SheetManifest:
    """Everything photo-eval needs to read a printed sheet back: page geometry, markers, cells and metadata."""
    kind: str                 # patch | kurakin | chart
    sheet_id: str
    paper: str
    n_pages: int
    cells: list[Cell]
    meta: dict = field(default_factory=dict)
    version: int = MANIFEST_VERSION

    @property
    def page_mm(self) -> tuple[float, float]:
        return paper_size(self.paper)

    @property
    def markers(self) -> list[MarkerSpec]:
        return marker_layout(self.page_mm)

    def page_cells(self, page: int) -> list[Cell]:
        return [c for c in self.cells if c.page == page]

    def qr_meta(self, page: int) -> dict:
        """The metadata printed in the QR of one page (kept short so the code stays readable in photos)."""
        keep = {k: self.meta[k] for k in ("patch", "size_mm", "target", "model", "levels", "aspect") if k in self.meta}
        return {"kind": self.kind, "sheet": self.sheet_id, "paper": self.paper, "page": page, "pages": self.n_pages,
                **keep}

    def to_dict(self) -> dict:
        return {"version": self.version, "kind": self.kind, "sheet_id": self.sheet_id, "paper": self.paper,
                "page_mm": list(self.page_mm), "n_pages": self.n_pages,
                "markers": [m.to_dict() for m in self.markers], "qr_rect_mm": list(qr_rect()),
                "scale_bar_mm": list(scale_bar_rect(self.page_mm)), "meta": self.meta,
                "cells": [c.to_dict() for c in self.cells]}

    @property
    def written_by(self) -> str:
        from patchlab.artifacts import SHEET_WRITERS

        return SHEET_WRITERS.get(self.kind, "patchlab print")

    def json_text(self) -> str:
        """The manifest file's content: the artifact tag (kind sheet-manifest) and `to_dict()`."""
        from patchlab.artifacts import tag

        return json.dumps({**tag("sheet-manifest", self.written_by), **self.to_dict()}, indent=1, default=float) + "\n"

    def to_json(self, path: str | Path) -> Path:
        """Write the manifest atomically (the caller checks the path first: patchlab.artifacts.check_outputs)."""
        from patchlab.artifacts import write_text

        return write_text(path, self.json_text())

    @classmethod
    def from_dict(cls, d: dict) -> "SheetManifest":
        try:
            version = int(d.get("version", 0))
            if version > MANIFEST_VERSION:
                raise PatchlabError(f"sheet manifest version {version} is newer than this patchlab ({MANIFEST_VERSION})")
            return cls(kind=str(d["kind"]), sheet_id=str(d["sheet_id"]), paper=str(d["paper"]),
                       n_pages=int(d["n_pages"]), cells=[Cell.from_dict(c) for c in d["cells"]],
                       meta=dict(d.get("meta", {})), version=version)
        except (KeyError, TypeError, ValueError) as exc:
            raise PatchlabError(f"not a patchlab sheet manifest (missing or bad field: {exc})") from None

    @classmethod
    def from_json(cls, path: str | Path) -> "SheetManifest":
        from patchlab.artifacts import load_json

        path = Path(path)
        data = load_json(path, "manifest file")
        if data.get("artifact") not in (None, "sheet-manifest"):
            from patchlab.artifacts import KINDS

            what = KINDS[data["artifact"]].what if data["artifact"] in KINDS else data["artifact"]
            raise PatchlabError(f"{path} is a {what} (written by `{data.get('written_by')}`), not a sheet manifest")
        try:
            return cls.from_dict(data)
        except PatchlabError as exc:
            raise PatchlabError(f"{path}: {exc}") from None


def sheet_id_for(*parts) -> str:
    """A short id derived from the content, so regenerating the same sheet gives the same id."""
    h = hashlib.sha1()
    for p in parts:
        h.update(p if isinstance(p, bytes) else json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:8]


# -- patch sheets ------------------------------------------------------------------------------------------------------
CAPTION_MM = 5.0
GAP_MM = 8.0


def patch_layout(page_mm: tuple[float, float], sizes_mm: list[float], aspect: float) -> list[tuple[int, tuple]]:
    """Place patch copies (width = size, height = size * aspect) in shelves, largest first -> [(page, rect)].

    Deterministic from (paper, sizes, aspect), so photo-eval can rebuild it from the QR alone.
    """
    cx, cy, cw, ch = content_rect(page_mm)
    placed: list[tuple[int, tuple]] = []
    page, x, y, shelf = 0, cx, cy, 0.0
    for size in sorted(sizes_mm, reverse=True):
        w, h = float(size), float(size) * aspect
        if w > cw or h + CAPTION_MM > ch:
            raise PatchlabError(f"a {size:g} mm patch ({w:.0f} x {h:.0f} mm) does not fit the printable area "
                                f"({cw:.0f} x {ch - CAPTION_MM:.0f} mm); use a larger paper or a smaller size_mm=")
        if x + w > cx + cw + 1e-9:                 # next shelf
            x, y, shelf = cx, y + shelf + GAP_MM, 0.0
        if y + h + CAPTION_MM > cy + ch + 1e-9:    # next page
            page, x, y, shelf = page + 1, cx, cy, 0.0
        placed.append((page, (x, y, w, h)))
        x += w + GAP_MM
        shelf = max(shelf, h + CAPTION_MM)
    # centre each shelf's block horizontally on its page
    out = []
    for p in sorted({p for p, _ in placed}):
        rows: dict[float, list] = {}
        for q, r in placed:
            if q == p:
                rows.setdefault(r[1], []).append(r)
        for row in rows.values():
            right = max(r[0] + r[2] for r in row)
            shift = (cx + cw - right) / 2
            out += [(p, (r[0] + shift, r[1], r[2], r[3])) for r in row]
    return out


def _compact(value: float) -> float | int:
    value = float(value)
    return int(value) if value.is_integer() else round(value, 3)


def patch_manifest(sizes_mm: list[float], paper: str, aspect: float, patch_meta: dict, sheet_id: str) -> SheetManifest:
    placed = patch_layout(paper_size(paper), sizes_mm, aspect)
    cells = [Cell(id=f"patch{i}", page=p, rect_mm=r, kind="patch", meta={"size_mm": r[2]})
             for i, (p, r) in enumerate(placed)]
    meta = {"patch": patch_meta.get("patch", "patch"), "size_mm": [_compact(s) for s in sizes_mm],
            "target": patch_meta.get("target"), "model": patch_meta.get("model"),
            "aspect": None if abs(aspect - 1.0) < 1e-9 else round(aspect, 6)}
    return SheetManifest(kind="patch", sheet_id=sheet_id, paper=paper.lower(), n_pages=1 + max(p for p, _ in placed),
                         cells=cells, meta={k: v for k, v in meta.items() if v is not None})


def manifest_from_qr(qr: dict) -> SheetManifest | None:
    """Rebuild a patch or chart manifest from its QR metadata alone (Kurakin sheets need their sheet.json)."""
    kind = qr.get("kind")
    try:
        if kind == "patch":
            sizes = [float(s) for s in qr["size_mm"]]
            meta = {k: qr[k] for k in ("patch", "target", "model") if k in qr}
            return patch_manifest(sizes, qr["paper"], float(qr.get("aspect", 1.0)), meta, str(qr["sheet"]))
        if kind == "chart":
            from patchlab.physical.calibration import chart_manifest

            return chart_manifest(str(qr["paper"]), int(qr.get("levels", 7)), sheet_id=str(qr["sheet"]))
    except (KeyError, TypeError, ValueError):
        return None
    return None


def patch_pages(patch_rgba: np.ndarray, manifest: SheetManifest) -> list[Page]:
    """Render a patch manifest to pages: each copy at its exact size, with a caption."""
    meta = manifest.meta
    pages = []
    for p in range(manifest.n_pages):
        title = f"patchlab patch sheet {manifest.sheet_id}  page {p + 1}/{manifest.n_pages}"
        desc = f"patch '{meta.get('patch', '?')}'"
        if meta.get("target"):
            desc += f" -> target '{meta['target']}'"
        if meta.get("model"):
            desc += f" on {meta['model']}"
        sizes = ", ".join(f"{s:g}" for s in meta.get("size_mm", []))
        page = frame_page(manifest.paper, manifest.qr_meta(p), [title, desc, f"widths: {sizes} mm", PRINT_INSTRUCTION])
        for cell in manifest.page_cells(p):
            x, y, w, h = cell.rect_mm
            page.add_image(x, y, w, h, patch_rgba, name=cell.id)
            page.add_text(x + w / 2, y + h + 4.0, f"{w:g} x {h:g} mm", size_pt=7, align="centre")
        pages.append(page)
    return pages
