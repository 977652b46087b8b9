"""photo-eval: find a printed sheet in a photo, rectify it, and score what is on it.

1. Detect the 4 ArUco markers (missing ones are named in the error).
2. Identify the sheet from its QR code (read from the rectified QR region), or from a manifest.
3. Fit page mm -> photo px over all 16 marker corners with RANSAC.
4. Kurakin sheets: crop every cell at the model's input size and classify it; destruction rate per attack and eps.
   Patch sheets: the patch's apparent size in the photo and the classifier's output on the whole scene.
5. Measure the print scale from the paper edges (a driver's "fit to page" shrinks the content but not the paper).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from patchlab.errors import PatchlabError
from patchlab.physical.layout import paper_size, PAPER_MM
from patchlab.geometry import apply_homography, quad_area, rect_corners, rect_to_image_homography, warp_rect
from patchlab.physical.markers import PageFit, describe_missing, detect_markers, fit_page
from patchlab.physical.qr import decode_payload, read_qr
from patchlab.physical.sheets import (MARGIN_MM, Cell, SheetManifest, manifest_from_qr, marker_layout, qr_rect)

MIN_PHOTO_SIDE = 200


# -- input -------------------------------------------------------------------------------------------------------------
def load_photo(source, name: str | None = None) -> np.ndarray:
    """A photo as H x W x 3 uint8 RGB from a path, bytes, a PIL image or an array (RGB)."""
    from patchlab.data import open_pil

    if isinstance(source, np.ndarray):
        arr = source
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.dtype != np.uint8:
            arr = (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)
        return np.ascontiguousarray(arr[..., :3])
    if isinstance(source, torch.Tensor):
        from patchlab.data import to_uint8_hwc

        return to_uint8_hwc(source[:3])
    if hasattr(source, "convert"):  # PIL
        return np.asarray(source.convert("RGB"))
    img = open_pil(source, name)
    arr = np.asarray(img.convert("RGB"))
    if min(arr.shape[:2]) < MIN_PHOTO_SIDE:
        label = name or ("uploaded image" if isinstance(source, (bytes, bytearray)) else source)
        raise PatchlabError(f"{label}: {arr.shape[1]}x{arr.shape[0]} px is too small to find a sheet in "
                            f"(need at least {MIN_PHOTO_SIDE} px)")
    return arr


# -- locating the sheet ------------------------------------------------------------------------------------------------
@dataclass
class Located:
    fit: PageFit
    manifest: SheetManifest
    page: int
    qr: dict | None
    markers: dict[int, np.ndarray]


def _read_qr_on_page(photo: np.ndarray, fit: PageFit) -> dict | None:
    """Read the QR from its known place on the page: rectified at a few scales around the photo's own, plain and
    binarised (a QR with 2-3 photo pixels per module reads once it is fronto-parallel)."""
    x, y, w, h = qr_rect()
    pad = 6.0
    native = fit.px_per_mm_at((x + w / 2, y + h / 2))
    scales = [native, 4.0, 6.0, 2 * native, 8.0, 3.0]
    tried = []
    for px_per_mm in scales:
        px_per_mm = float(min(12.0, max(3.0, px_per_mm)))
        if any(abs(px_per_mm - t) < 0.5 for t in tried):
            continue
        tried.append(px_per_mm)
        crop = warp_rect(photo, fit.H, (x - pad, y - pad, w + 2 * pad, h + 2 * pad),
                         int((w + 2 * pad) * px_per_mm), int((h + 2 * pad) * px_per_mm))
        gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        _, binary = cv2.threshold(cv2.GaussianBlur(gray, (0, 0), 0.6), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        for candidate in (gray, binary):
            meta = decode_payload(read_qr(candidate) or "")
            if meta:
                return meta
    return None


def locate_sheet(photo: np.ndarray, manifest: SheetManifest | None = None, min_markers: int = 4,
                 page: int | None = None) -> Located:
    """Detect markers, identify the sheet (QR or manifest) and fit the page homography."""
    markers = detect_markers(photo[..., ::-1])
    expected = [0, 1, 2, 3]
    if not any(i in markers for i in expected):
        seen = f" (saw only unrelated marker ids {sorted(markers)})" if markers else ""
        raise PatchlabError("no patchlab sheet markers found (ArUco DICT_4X4_50 ids 0-3 at the page corners)"
                            f"{seen}; is this a photo of a printed patchlab sheet?")
    if sum(i in markers for i in expected) < min_markers:
        raise PatchlabError(describe_missing(markers, expected) + f"; need {min_markers} (all four corners in view, "
                            "none covered or glared), or pass min_markers=3")
    qr = None
    if manifest is None:
        for paper in PAPER_MM:
            fit = fit_page(markers, marker_layout(paper_size(paper)), min_markers, photo.shape[:2])
            qr = _read_qr_on_page(photo, fit)
            if qr:
                break
        if qr is None:
            qr = decode_payload(read_qr(photo) or "")
        if qr is None:
            raise PatchlabError("found the sheet markers but could not read its QR code; pass its manifest "
                                "(SHEET.sheet.json) with manifest=")
        if qr.get("kind") == "kurakin":
            raise PatchlabError(f"this is Kurakin sheet {qr.get('sheet')}: pass its manifest (SHEET.sheet.json) "
                                "with manifest=")
        manifest = manifest_from_qr(qr)
        if manifest is None:
            raise PatchlabError(f"unrecognised sheet metadata in the QR code: {qr}; pass its manifest "
                                "(SHEET.sheet.json) with manifest=")
    fit = fit_page(markers, manifest.markers, min_markers, photo.shape[:2])
    if qr is None:
        qr = _read_qr_on_page(photo, fit)
    if qr is not None and str(qr.get("sheet")) != manifest.sheet_id:
        raise PatchlabError(f"the photo shows sheet {qr.get('sheet')} but the manifest is for sheet {manifest.sheet_id}")
    if page is None:
        if qr is not None and "page" in qr:
            page = int(qr["page"])
        elif manifest.n_pages == 1:
            page = 0
        else:
            raise PatchlabError(f"could not read the QR code to tell which of the {manifest.n_pages} pages this is; "
                                "pass page=N (0-based)")
    if not 0 <= page < manifest.n_pages:
        raise PatchlabError(f"page {page} is out of range for a {manifest.n_pages}-page sheet")
    return Located(fit=fit, manifest=manifest, page=page, qr=qr, markers=markers)


# -- print scale from the paper edges ----------------------------------------------------------------------------------
def measure_print_scale(photo: np.ndarray, fit: PageFit, page_mm: tuple[float, float], px_per_mm: float = 4.0) -> dict:
    """Estimate the printer's scale from where the paper edges lie relative to the markers.

    The markers define page-content mm. A driver that scales the print moves the content relative to the paper,
    so in content mm the paper's width reads page_w / scale. Needs the paper edges visible against a darker
    background; returns {"print_scale": None, ...} when they are not.
    """
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY).astype(np.float32)
    w_mm, h_mm = page_mm
    search, inside = 20.0, MARGIN_MM - 2.0
    edges = {}
    for side in ("left", "right", "top", "bottom"):
        horizontal = side in ("left", "right")
        along = (40.0, (h_mm if horizontal else w_mm) - 40.0)
        if side == "left":
            rect = (-search, along[0], search + inside, along[1] - along[0])
        elif side == "right":
            rect = (w_mm - inside, along[0], search + inside, along[1] - along[0])
        elif side == "top":
            rect = (along[0], -search, along[1] - along[0], search + inside)
        else:
            rect = (along[0], h_mm - inside, along[1] - along[0], search + inside)
        ow, oh = int(round(rect[2] * px_per_mm)), int(round(rect[3] * px_per_mm))
        M = rect_to_image_homography(fit.H, rect, ow, oh)
        strip = cv2.warpPerspective(gray, M, (ow, oh), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=float("nan"))
        with warnings.catch_warnings():  # rows/columns outside the photo are all-NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            profile = np.nanmedian(strip, axis=0 if horizontal else 1) if np.isfinite(strip).any() else None
        edges[side] = _edge_position(profile, rect[0] if horizontal else rect[1], 1 / px_per_mm,
                                     paper_high=side in ("left", "top"))
    out: dict = {"paper_edges_mm": edges}
    if None in (edges["left"], edges["right"]) and None in (edges["top"], edges["bottom"]):
        out.update(print_scale=None, scale_error_mm=None,
                   note="paper edges not visible against the background; the print scale cannot be checked")
        return out
    scales = []
    if edges["left"] is not None and edges["right"] is not None:
        scales.append(w_mm / (edges["right"] - edges["left"]))
    if edges["top"] is not None and edges["bottom"] is not None:
        scales.append(h_mm / (edges["bottom"] - edges["top"]))
    s = float(np.mean(scales))
    spacing = marker_layout(page_mm)[1].x_mm - marker_layout(page_mm)[0].x_mm
    out.update(print_scale=s, scale_error_mm=100.0 * (s - 1.0),
               marker_spacing_mm={"nominal": spacing, "measured": spacing * s})
    return out


def _edge_position(profile, start_mm: float, step_mm: float, paper_high: bool) -> float | None:
    """Sub-pixel position (mm) of the dark->bright step in a 1D profile; None if no clear step."""
    if profile is None:
        return None
    p = np.asarray(profile, dtype=np.float64)
    if not paper_high:                  # make the paper always on the right
        p = p[::-1]
    valid = np.isfinite(p)
    if valid.sum() < 10:
        return None
    n = len(p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        paper = np.nanmedian(p[int(n * 0.85):])
        first = np.nanmedian(p[:max(3, int(n * 0.15))])
    if not np.isfinite(paper) or not np.isfinite(first) or paper - first < 0.12 * max(paper, 1.0):
        return None
    mid = (paper + first) / 2
    # the last crossing from below to above before the paper plateau
    idx = None
    for i in range(n - 1, 0, -1):
        if p[i] >= mid and np.isfinite(p[i - 1]) and p[i - 1] < mid:
            idx = i
            break
    if idx is None:
        return None
    frac = (mid - p[idx - 1]) / (p[idx] - p[idx - 1])
    pos = (idx - 1 + frac + 0.5)       # in samples from the (possibly reversed) start, pixel-edge units
    if not paper_high:
        pos = n - pos
    return float(start_mm + pos * step_mm)


# -- scoring -----------------------------------------------------------------------------------------------------------
@dataclass
class CellResult:
    id: str
    page: int
    meta: dict
    top5: list[int]
    probs: list[float]
    labels: list[str]

    @property
    def top1(self) -> int:
        return self.top5[0]

    def to_dict(self) -> dict:
        return {"id": self.id, "page": self.page, **self.meta, "photo_top1": self.top1, "photo_label": self.labels[0],
                "photo_prob": self.probs[0], "photo_top5": self.top5}


@dataclass
class PhotoEvalResult:
    sheet_id: str
    kind: str
    page: int
    fit: PageFit
    scale: dict
    cells: list[CellResult] = field(default_factory=list)
    patches: list[dict] = field(default_factory=list)
    scene: dict | None = None
    annotated: np.ndarray | None = None
    model: str | None = None
    qr: dict | None = None

    def to_dict(self) -> dict:
        out = {"sheet_id": self.sheet_id, "kind": self.kind, "page": self.page, "model": self.model,
               **self.fit.summary(), **{k: v for k, v in self.scale.items()}, "qr": self.qr}
        if self.cells:
            out["cells"] = [c.to_dict() for c in self.cells]
            out.update(kurakin_summary(self.cells))
        if self.patches:
            out["patches"] = self.patches
        if self.scene is not None:
            out["scene"] = self.scene
        return out


def _get_model(name: str | None, model, device):
    if model is not None:
        return model
    if not name:
        raise PatchlabError("the sheet does not name a model; pass model=")
    from patchlab.models import shared_model

    return shared_model(name, device)


def _classify(model, batch: torch.Tensor, k: int = 5) -> tuple[list[list[int]], list[list[float]]]:
    probs = model.predict(batch)
    v, i = probs.topk(min(k, probs.shape[-1]), dim=-1)
    return i.cpu().tolist(), v.cpu().tolist()


def paper_white(photo: np.ndarray, fit: PageFit, rect_mm: tuple[float, float, float, float],
                inner_mm: float = 0.6, outer_mm: float = 2.4, px_per_mm: float = 4.0) -> np.ndarray:
    """The paper's colour (RGB float 0..255) in a thin ring around a page rect: the local white reference.

    The brighter half of the ring is used, so captions and neighbouring cells do not pull it down.
    """
    x, y, w, h = rect_mm
    big = (x - outer_mm, y - outer_mm, w + 2 * outer_mm, h + 2 * outer_mm)
    ow, oh = max(8, int(round(big[2] * px_per_mm))), max(8, int(round(big[3] * px_per_mm)))
    crop = warp_rect(photo, fit.H, big, ow, oh, supersample=False).astype(np.float32).reshape(oh, ow, 3)
    yy, xx = np.mgrid[0:oh, 0:ow]
    mx = (xx + 0.5) / px_per_mm - outer_mm   # mm relative to the rect's top-left
    my = (yy + 0.5) / px_per_mm - outer_mm
    inside = (mx > -inner_mm) & (mx < w + inner_mm) & (my > -inner_mm) & (my < h + inner_mm)
    ring = crop[~inside]
    lum = ring.mean(1)
    bright = ring[lum >= np.median(lum)]
    return np.median(bright, axis=0)


SHARPEN_AMOUNT = 0.75  # photo-eval's default unsharp mask on cell crops
SHARPEN_SIGMA = 0.8  # model-input pixels


def sharpen(crop: np.ndarray, amount: float, sigma: float = SHARPEN_SIGMA) -> np.ndarray:
    """Unsharp mask (float H x W x 3 in [0, 1]): x + amount * (x - blur(x)), clipped."""
    if amount <= 0:
        return crop
    blurred = cv2.GaussianBlur(crop, (0, 0), sigma)
    return np.clip(crop + amount * (crop - blurred), 0, 1)


def crop_cells(photo: np.ndarray, fit: PageFit, cells: list[Cell], size: int, white_balance: bool = True,
               sharpen_amount: float = SHARPEN_AMOUNT) -> torch.Tensor:
    """Rectified crops of cells at size x size, as an (N, 3, size, size) float tensor in [0, 1].

    With `white_balance`, each crop is divided by the paper white measured right around it, which removes the
    photo's exposure, white-balance cast and lighting gradient (printed white = 1.0, as in the digital image).
    `sharpen_amount` undoes part of the blur that printing and photographing add: a printed cell is resampled twice
    (printer raster -> camera sensor -> model input), which acts like a Gaussian blur of about 0.5-0.8 input pixels.
    On simulated photos (tests/test_physical_eval.py) an unsharp mask of 0.75 at sigma 0.8 lowers the crops' error
    against the digital images and raises clean-cell agreement by about 3-4 points; 0 turns it off.
    """
    crops = []
    for c in cells:
        crop = warp_rect(photo, fit.H, c.rect_mm, size, size).astype(np.float32) / 255.0
        if white_balance:
            white = np.maximum(paper_white(photo, fit, c.rect_mm) / 255.0, 0.05)
            crop = np.clip(crop / white[None, None, :], 0, 1)
        crops.append(sharpen(crop, sharpen_amount))
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()


def evaluate_photo(source, manifest: SheetManifest | str | Path | None = None, model=None, device=None,
                   min_markers: int = 4, page: int | None = None, annotate: bool = True,
                   name: str | None = None, check_scale: bool = True, white_balance: bool = True,
                   sharpen_amount: float = SHARPEN_AMOUNT) -> PhotoEvalResult:
    """Score one photo of a printed sheet (see the module docstring)."""
    photo = load_photo(source, name)
    if isinstance(manifest, (str, Path)):
        manifest = SheetManifest.from_json(manifest)
    loc = locate_sheet(photo, manifest, min_markers, page)
    man = loc.manifest
    cells = man.page_cells(loc.page)
    scale = measure_print_scale(photo, loc.fit, man.page_mm) if check_scale else {}
    result = PhotoEvalResult(sheet_id=man.sheet_id, kind=man.kind, page=loc.page, fit=loc.fit, scale=scale, qr=loc.qr)
    if man.kind == "kurakin":
        clf = _get_model(man.meta.get("model"), model, device)
        result.model = clf.name
        imgs = [c for c in cells if c.kind == "image"]
        if imgs:
            batch = crop_cells(photo, loc.fit, imgs, clf.input_size, white_balance, sharpen_amount)
            top5, probs = [], []
            for start in range(0, len(batch), 32):
                t, p = _classify(clf, batch[start:start + 32])
                top5 += t
                probs += p
            result.cells = [CellResult(c.id, c.page, c.meta, t, p, [clf.labels[j] for j in t])
                            for c, t, p in zip(imgs, top5, probs)]
    elif man.kind == "patch":
        frame = photo.shape[0] * photo.shape[1]
        for c in cells:
            w = c.rect_mm[2]
            quad = loc.fit.to_image(rect_corners(*c.rect_mm))
            side_w = (np.linalg.norm(quad[1] - quad[0]) + np.linalg.norm(quad[2] - quad[3])) / 2
            side_h = (np.linalg.norm(quad[3] - quad[0]) + np.linalg.norm(quad[2] - quad[1])) / 2
            area = quad_area(quad)
            s = scale.get("print_scale") or 1.0
            result.patches.append({"id": c.id, "size_mm": w, "printed_size_mm": w * s, "apparent_px": [side_w, side_h],
                                   "frame_fraction": float(area / frame), "corners_px": quad.round(1).tolist()})
        if model is not None or man.meta.get("model"):
            try:
                clf = _get_model(man.meta.get("model"), model, device)
            except PatchlabError:
                clf = None
            if clf is not None:
                from patchlab.data import imagenet_classes
                from patchlab.models import preprocess

                x = preprocess(torch.from_numpy(photo.copy()).permute(2, 0, 1).float() / 255.0, clf).unsqueeze(0)
                t, p = _classify(clf, x)
                target = man.meta.get("target")
                target_idx = None
                if target is not None:
                    try:
                        target_idx = imagenet_classes().lookup(str(target)) if len(clf.labels) == 1000 else None
                    except (PatchlabError, TypeError, IndexError):
                        target_idx = None
                result.model = clf.name
                result.scene = {"top5": [{"index": j, "label": clf.labels[j], "prob": q} for j, q in zip(t[0], p[0])],
                                "target": target, "target_index": target_idx,
                                "target_is_top1": (target_idx == t[0][0]) if target_idx is not None else None}
    if annotate:
        result.annotated = annotate_photo(photo, loc, result)
    return result


# -- Kurakin scoring ---------------------------------------------------------------------------------------------------
def kurakin_summary(cells: list[CellResult]) -> dict:
    """Accuracy (digital vs photo) and Kurakin destruction rates (top-1 and top-5) per attack and eps.

    Destruction rate (Kurakin et al. 2016): among images whose clean version is correctly classified digitally
    and whose adversarial version is misclassified digitally, the fraction whose photographed adversarial
    version is classified correctly again.
    """
    by_source: dict = defaultdict(dict)
    for c in cells:
        by_source[c.meta.get("source_index")][(c.meta.get("attack"), c.meta.get("eps"))] = c
    groups: dict = defaultdict(lambda: {"n": 0, "digital_correct": 0, "photo_correct": 0, "agree": 0,
                                        "d1_num": 0, "d1_den": 0, "d5_num": 0, "d5_den": 0})
    for variants in by_source.values():
        clean = variants.get(("clean", 0.0)) or variants.get(("clean", 0))
        for (attack, eps), c in variants.items():
            y = c.meta.get("label")
            g = groups[(attack, eps)]
            g["n"] += 1
            d1, d5 = c.meta.get("digital_top5", [None])[0], c.meta.get("digital_top5", [])
            g["digital_correct"] += int(d1 == y)
            g["photo_correct"] += int(c.top1 == y)
            g["agree"] += int(c.top1 == d1)
            if attack == "clean" or clean is None:
                continue
            clean5 = clean.meta.get("digital_top5", [])
            if clean5 and clean5[0] == y and d1 != y:
                g["d1_den"] += 1
                g["d1_num"] += int(c.top1 == y)
            if y in clean5 and y not in d5:
                g["d5_den"] += 1
                g["d5_num"] += int(y in c.top5)
    rows = []
    for (attack, eps), g in sorted(groups.items(), key=lambda kv: (kv[0][0] != "clean", kv[0][0], kv[0][1])):
        rows.append({"attack": attack, "eps": eps, "eps_255": round(float(eps) * 255, 3), "n": g["n"],
                     "digital_accuracy": g["digital_correct"] / g["n"], "photo_accuracy": g["photo_correct"] / g["n"],
                     "agreement": g["agree"] / g["n"],
                     "destruction_top1": g["d1_num"] / g["d1_den"] if g["d1_den"] else None, "destruction_top1_n": g["d1_den"],
                     "destruction_top5": g["d5_num"] / g["d5_den"] if g["d5_den"] else None, "destruction_top5_n": g["d5_den"]})
    clean_rows = [r for r in rows if r["attack"] == "clean"]
    out = {"table": rows, "n": len(cells)}
    if clean_rows:
        out["clean_agreement"] = clean_rows[0]["agreement"]
        out["clean_accuracy"] = clean_rows[0]["photo_accuracy"]
    return out


def merge_cells(results: list[PhotoEvalResult]) -> list[CellResult]:
    return [c for r in results for c in r.cells]


# -- annotation --------------------------------------------------------------------------------------------------------
def annotate_photo(photo: np.ndarray, loc: Located, result: PhotoEvalResult, max_side: int = 1600) -> np.ndarray:
    """The photo with the detected markers, the page outline and each cell's verdict drawn on (RGB uint8)."""
    scale = min(1.0, max_side / max(photo.shape[:2]))
    img = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else photo.copy()
    img = np.ascontiguousarray(img)
    thick = max(1, int(round(2 * max(img.shape[:2]) / 1600)))

    def poly(pts_px, colour, width=thick):
        p = np.round(np.asarray(pts_px) * scale).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(img, [p], True, colour, width, cv2.LINE_AA)

    for mid, corners in loc.markers.items():
        poly(corners, (0, 200, 0) if mid in loc.fit.found_ids else (200, 200, 0))
        c = corners.mean(0) * scale
        cv2.putText(img, str(mid), (int(c[0]) - 6, int(c[1]) + 6), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * thick, (255, 0, 0),
                    thick, cv2.LINE_AA)
    w, h = loc.manifest.page_mm
    poly(loc.fit.to_image(rect_corners(0, 0, w, h)), (0, 120, 255))
    by_id = {c.id: c for c in result.cells}
    for cell in loc.manifest.page_cells(loc.page):
        x, y, cw, ch = cell.rect_mm
        quad = loc.fit.to_image(rect_corners(x, y, cw, ch))
        colour = (255, 160, 0)
        label = None
        r = by_id.get(cell.id)
        if r is not None:
            ok = r.top1 == r.meta.get("label")
            colour = (0, 200, 0) if ok else (230, 0, 0)
            label = f"{r.labels[0][:14]} {r.probs[0]:.2f}"
        poly(quad, colour)
        if label:
            p = quad[3] * scale
            cv2.putText(img, label, (int(p[0]) + 2, int(p[1]) - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35 * thick, colour,
                        max(1, thick // 2), cv2.LINE_AA)
    lines = [f"sheet {result.sheet_id} page {result.page + 1}  markers {loc.fit.found_ids}  "
             f"reproj {loc.fit.rms_mm:.2f} mm"]
    if result.scale.get("print_scale"):
        lines.append(f"print scale {result.scale['print_scale']:.4f} ({result.scale['scale_error_mm']:+.2f} mm per 100 mm)")
    if result.scene:
        top = result.scene["top5"][0]
        lines.append(f"scene: {top['label']} {top['prob']:.2f}")
    for i, text in enumerate(lines):
        cv2.putText(img, text, (10, 25 + 22 * i * thick), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * thick, (255, 255, 255),
                    thick + 2, cv2.LINE_AA)
        cv2.putText(img, text, (10, 25 + 22 * i * thick), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * thick, (0, 0, 0), thick,
                    cv2.LINE_AA)
    return img


def page_corner_error_mm(fit: PageFit, H_true: np.ndarray, page_mm: tuple[float, float]) -> float:
    """Max distance (mm) between the page corners as located by `fit` and by the true homography."""
    corners = rect_corners(0, 0, *page_mm)
    return float(np.linalg.norm(fit.to_page(apply_homography(H_true, corners)) - corners, axis=1).max())
