"""Colour calibration: a printable RGB chart and a printer->camera colour model fitted from a photo of it.

The chart is a levels^3 RGB grid plus a grey ramp in a fixed shuffled order (so lighting gradients do not line up
with colour), with the usual markers, QR code and scale bar. `fit_calibration` rectifies the photographed chart,
takes the median of each swatch's inner part, divides out the lighting using the white paper around each swatch,
fits `patchlab.eot.colour.ColourModel` on a training split, reports CIEDE2000 on held-out swatches, then refits on
all swatches and stores the measured colours as the printable palette for the NPS loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from patchlab.errors import PatchlabError
from patchlab.physical.layout import Page, paper_size, write_pdf
from patchlab.physical.sheets import Cell, SheetManifest, content_rect, frame_page, sheet_id_for

SWATCH_FILL = 0.86     # swatch side / pitch; the rest is white paper (the local white reference)
DEFAULT_LEVELS = 7
GREY_STEPS = 25
CHART_SEED = 20161607


def chart_colours(levels: int = DEFAULT_LEVELS, greys: int = GREY_STEPS) -> np.ndarray:
    """(N, 3) colours: every combination of `levels` values per channel, then a grey ramp, in a fixed shuffle."""
    if not 2 <= levels <= 12:
        raise PatchlabError(f"chart levels must be 2..12, got {levels}")
    v = np.linspace(0, 1, levels)
    grid = np.stack(np.meshgrid(v, v, v, indexing="ij"), -1).reshape(-1, 3)
    ramp = np.repeat(np.linspace(0, 1, greys)[:, None], 3, 1)
    colours = np.concatenate([grid, ramp])
    return colours[np.random.default_rng(CHART_SEED).permutation(len(colours))]


def chart_manifest(paper: str = "a4", levels: int = DEFAULT_LEVELS, sheet_id: str | None = None) -> SheetManifest:
    """Deterministic from (paper, levels): photo-eval and calibrate rebuild it from the QR code."""
    colours = chart_colours(levels)
    cx, cy, cw, ch = content_rect(paper_size(paper))
    n = len(colours)
    best = None
    for cols in range(4, 60):
        rows = -(-n // cols)
        pitch = min(cw / cols, ch / rows)
        if best is None or pitch > best[0]:
            best = (pitch, cols, rows)
    pitch, cols, rows = best
    side = pitch * SWATCH_FILL
    x0 = cx + (cw - cols * pitch) / 2 + (pitch - side) / 2
    y0 = cy + (ch - rows * pitch) / 2 + (pitch - side) / 2
    cells = []
    for i, rgb in enumerate(colours):
        r, c = divmod(i, cols)
        cells.append(Cell(id=f"s{i}", page=0, rect_mm=(x0 + c * pitch, y0 + r * pitch, side, side), kind="swatch",
                          meta={"rgb": [round(float(t), 6) for t in rgb]}))
    sid = sheet_id or sheet_id_for("chart", paper.lower(), levels)
    return SheetManifest(kind="chart", sheet_id=sid, paper=paper.lower(), n_pages=1, cells=cells,
                         meta={"levels": levels, "n_swatches": n})


def chart_pages(manifest: SheetManifest) -> list[Page]:
    levels = manifest.meta.get("levels", DEFAULT_LEVELS)
    lines = [f"patchlab colour chart {manifest.sheet_id}",
             f"{levels}^3 RGB grid + {GREY_STEPS} greys = {len(manifest.cells)} swatches",
             "photograph under the evaluation light, flat, all 4 markers in view;",
             "then: patchlab calibrate fit PHOTO (writes PHOTO.colour.json)"]
    page = frame_page(manifest.paper, manifest.qr_meta(0), lines)
    for cell in manifest.cells:
        page.add_rect(*cell.rect_mm, rgb=tuple(cell.meta["rgb"]))
    return [page]


def make_chart(paper: str = "a4", levels: int = DEFAULT_LEVELS) -> tuple[bytes, SheetManifest, list[Page]]:
    manifest = chart_manifest(paper, levels)
    pages = chart_pages(manifest)
    return (write_pdf(pages, title=f"patchlab colour chart {manifest.sheet_id}", written_by="patchlab calibrate chart"),
            manifest, pages)


# -- measuring ---------------------------------------------------------------------------------------------------------
def sample_swatches(photo: np.ndarray, fit, manifest: SheetManifest, inner: float = 0.5, flat_field: bool = True,
                    px_per_mm: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """(digital (N, 3), observed (N, 3)) in [0, 1]: the median of each swatch's inner part of the rectified photo.

    With `flat_field`, each swatch is divided by the paper white in the gap around it and multiplied by the median
    paper white of the chart, which removes lighting gradients but keeps the overall white level and cast.
    """
    from patchlab.geometry import rectify_page

    page = rectify_page(photo, fit.H, manifest.page_mm, px_per_mm).astype(np.float32) / 255.0
    digital, observed, whites = [], [], []
    for cell in manifest.cells:
        x, y, w, h = cell.rect_mm
        m = (1 - inner) / 2
        sl = _slice(page, (x + m * w, y + m * h, inner * w, inner * h), px_per_mm)
        if sl.size == 0:
            raise PatchlabError(f"swatch {cell.id} lies outside the photo")
        observed.append(np.median(sl.reshape(-1, 3), axis=0))
        digital.append(cell.meta["rgb"])
        if flat_field:
            gap = (1 - SWATCH_FILL) / SWATCH_FILL * w / 2  # white paper between swatches
            ring = [_slice(page, r, px_per_mm) for r in _ring(x, y, w, h, gap)]
            pix = np.concatenate([r.reshape(-1, 3) for r in ring if r.size])
            lum = pix.mean(1)
            whites.append(np.median(pix[lum >= np.median(lum)], axis=0))
    digital, observed = np.asarray(digital, np.float64), np.asarray(observed, np.float64)
    if flat_field:
        whites = np.maximum(np.asarray(whites, np.float64), 1e-3)
        observed = observed / whites * np.median(whites, axis=0)
    return digital, np.clip(observed, 0, 1)


def _slice(page: np.ndarray, rect, s: float) -> np.ndarray:
    x, y, w, h = rect
    return page[max(0, int(round(y * s))):max(0, int(round((y + h) * s))), max(0, int(round(x * s))):max(0, int(round((x + w) * s)))]


def _ring(x, y, w, h, gap):
    """Four thin strips in the middle of the white gap around a swatch."""
    t, o = gap * 0.5, gap * 0.75
    return [(x, y - o, w, t), (x, y + h + o - t, w, t), (x - o, y, t, h), (x + w + o - t, y, t, h)]


def delta_e2000(rgb_a: np.ndarray, rgb_b: np.ndarray) -> np.ndarray:
    """CIEDE2000 between sRGB colours in [0, 1] (N, 3)."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    a = rgb2lab(np.clip(np.asarray(rgb_a, np.float64), 0, 1).reshape(-1, 1, 3)).reshape(-1, 3)
    b = rgb2lab(np.clip(np.asarray(rgb_b, np.float64), 0, 1).reshape(-1, 1, 3)).reshape(-1, 3)
    return deltaE_ciede2000(a, b)


@dataclass
class CalibrationResult:
    model: object                  # patchlab.eot.colour.ColourModel, fitted on all swatches, palette attached
    kind: str
    n_swatches: int
    n_holdout: int
    holdout_delta_e: dict          # mean / median / p95 / max CIEDE2000 on held-out swatches
    train_delta_e: dict
    identity_delta_e: dict         # held-out error if no colour model were used (digital = observed)
    fit_summary: dict = field(default_factory=dict)
    digital: np.ndarray | None = None
    observed: np.ndarray | None = None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "n_swatches": self.n_swatches, "n_holdout": self.n_holdout,
                "holdout_delta_e2000": self.holdout_delta_e, "train_delta_e2000": self.train_delta_e,
                "no_model_delta_e2000": self.identity_delta_e, "palette_colours": self.n_swatches, **self.fit_summary}


def _stats(de: np.ndarray) -> dict:
    return {"mean": float(de.mean()), "median": float(np.median(de)), "p95": float(np.percentile(de, 95)),
            "max": float(de.max())}


def fit_colour_model(digital: np.ndarray, observed: np.ndarray, kind: str = "root_polynomial", holdout: float = 0.2,
                     seed: int = 0) -> CalibrationResult:
    """Fit on a random (1 - holdout) split, report CIEDE2000 on the rest, refit on everything."""
    import torch

    from patchlab.eot.colour import ColourModel

    n = len(digital)
    if n < 20:
        raise PatchlabError(f"need at least 20 swatches to fit and hold out, got {n}")
    if not 0 < holdout < 0.9:
        raise PatchlabError(f"holdout must be in (0, 0.9), got {holdout}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(5, int(round(n * holdout)))
    test, train = perm[:n_test], perm[n_test:]
    d = torch.as_tensor(digital, dtype=torch.float32)
    o = torch.as_tensor(observed, dtype=torch.float32)
    split = ColourModel.fit(d[train], o[train], kind=kind)
    with torch.no_grad():
        pred_test = split.apply_colours(d[test]).numpy()
        pred_train = split.apply_colours(d[train]).numpy()
    full = ColourModel.fit(d, o, kind=kind, palette=o.clamp(0, 1))
    return CalibrationResult(model=full, kind=kind, n_swatches=n, n_holdout=n_test,
                             holdout_delta_e=_stats(delta_e2000(pred_test, observed[test])),
                             train_delta_e=_stats(delta_e2000(pred_train, observed[train])),
                             identity_delta_e=_stats(delta_e2000(digital[test], observed[test])),
                             digital=digital, observed=observed)


def fit_calibration(source, manifest: SheetManifest | None = None, kind: str = "root_polynomial",
                    holdout: float = 0.2, min_markers: int = 4, flat_field: bool = True,
                    name: str | None = None) -> CalibrationResult:
    """Photo of a printed chart -> fitted colour model with held-out CIEDE2000."""
    from patchlab.physical.photo_eval import load_photo, locate_sheet

    photo = load_photo(source, name)
    loc = locate_sheet(photo, manifest, min_markers)
    if loc.manifest.kind != "chart":
        raise PatchlabError(f"this photo shows a {loc.manifest.kind} sheet ({loc.manifest.sheet_id}), not a colour "
                            "chart; print one with `patchlab calibrate chart`")
    digital, observed = sample_swatches(photo, loc.fit, loc.manifest, flat_field=flat_field)
    result = fit_colour_model(digital, observed, kind, holdout)
    result.fit_summary = {"sheet_id": loc.manifest.sheet_id, **loc.fit.summary()}
    return result
