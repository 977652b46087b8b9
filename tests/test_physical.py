"""Printables and print-and-photograph: PDF geometry, QR, markers on simulated photos, calibration, bad photos."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from patchlab.errors import PatchlabError
from patchlab.physical.layout import PT_PER_MM, paper_size, render_page, render_pdf_page
from patchlab.geometry import apply_homography
from patchlab.physical.markers import detect_markers, fit_page, marker_bits, marker_image
from patchlab.physical.printing import print_patch, save_print
from patchlab.physical.qr import decode_payload, read_payload
from patchlab.physical.sheets import scale_bar_rect
from patchlab.simulate.photo import PhotoConditions, simulate_photo, synthetic_printer

TOL_MM = 0.1


# -- helpers -----------------------------------------------------------------------------------------------------------
def _patch(h=64, w=64, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rgba = (rng.random((h, w, 4)) * 255).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    rgba[..., 3] = np.where(((yy - h / 2 + 0.5) / (h / 2)) ** 2 + ((xx - w / 2 + 0.5) / (w / 2)) ** 2 <= 1, 255, 0)
    return rgba


def parse_pdf_page(path, index=0) -> dict:
    """Independent PDF reading with pypdf: page size, filled rectangles and placed images, in page mm (top-left)."""
    from pypdf import PdfReader
    from pypdf.generic import ContentStream

    reader = PdfReader(str(path))
    page = reader.pages[index]
    w_pt, h_pt = float(page.mediabox.width), float(page.mediabox.height)
    ctm = np.eye(3)
    stack, pending, rects, images = [], [], [], []

    def to_mm(x, y):
        p = ctm @ np.array([x, y, 1.0])
        return p[0] / PT_PER_MM, (h_pt - p[1]) / PT_PER_MM

    for operands, op in ContentStream(page.get_contents(), reader).operations:
        if op == b"q":
            stack.append(ctm.copy())
        elif op == b"Q":
            ctm = stack.pop()
        elif op == b"cm":
            a, b, c, d, e, f = (float(v) for v in operands)
            ctm = ctm @ np.array([[a, c, e], [b, d, f], [0, 0, 1]])
        elif op == b"re":
            pending.append([float(v) for v in operands])
        elif op in (b"f", b"f*", b"F"):
            for x, y, w, h in pending:
                (x0, y0), (x1, y1) = to_mm(x, y), to_mm(x + w, y + h)
                rects.append((min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0)))
            pending = []
        elif op == b"n":
            pending = pending if pending else []
        elif op == b"Do":
            (x0, y0), (x1, y1) = to_mm(0, 0), to_mm(1, 1)
            images.append((min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0)))
    return {"size_mm": (w_pt / PT_PER_MM, h_pt / PT_PER_MM), "rects": rects, "images": images}


def marker_from_rects(rects, spec) -> tuple[tuple, np.ndarray]:
    """Bounding box and 6x6 bit pattern of the rectangles drawn inside a marker's area."""
    x, y, s = spec.x_mm, spec.y_mm, spec.size_mm
    inside = [r for r in rects if r[0] >= x - 1 and r[1] >= y - 1 and r[0] + r[2] <= x + s + 1 and r[1] + r[3] <= y + s + 1]
    x0 = min(r[0] for r in inside)
    y0 = min(r[1] for r in inside)
    x1 = max(r[0] + r[2] for r in inside)
    y1 = max(r[1] + r[3] for r in inside)
    cell = (x1 - x0) / 6
    bits = np.zeros((6, 6), bool)
    for r in inside:
        c0, c1 = round((r[0] - x0) / cell), round((r[0] + r[2] - x0) / cell)
        r0, r1 = round((r[1] - y0) / cell), round((r[1] + r[3] - y0) / cell)
        bits[r0:r1, c0:c1] = True
    return (x0, y0, x1 - x0, y1 - y0), bits


@pytest.fixture(scope="module")
def patch_sheet(tmp_path_factory):
    out = tmp_path_factory.mktemp("print") / "sheet.pdf"
    result = print_patch(_patch(64, 80), size_mm=100, paper="a4", copies_sizes=[100, 50],
                         meta={"target": "toaster", "model": "efficientnet_lite0"}, name="toaster_test", png_dpi=300)
    save_print(result, out)
    return result, out


# -- markers -----------------------------------------------------------------------------------------------------------
def test_marker_detection_exact_and_under_perspective():
    canvas = np.full((600, 800), 255, np.uint8)
    truth = {}
    for i, (x, y) in enumerate([(40, 40), (600, 60), (580, 400), (60, 420)]):
        canvas[y:y + 120, x:x + 120] = marker_image(i, 120)
        truth[i] = np.array([[x, y], [x + 120, y], [x + 120, y + 120], [x, y + 120]], float) - 0.5
    found = detect_markers(canvas)
    assert sorted(found) == [0, 1, 2, 3]
    for i in truth:
        assert np.abs(found[i] - truth[i]).max() < 0.15
    H = np.array([[0.9, 0.15, 40], [-0.05, 0.8, 60], [0.0002, 0.0003, 1.0]])
    warped = cv2.warpPerspective(canvas, H, (1000, 800), flags=cv2.INTER_LINEAR, borderValue=255)
    found = detect_markers(cv2.GaussianBlur(warped, (0, 0), 0.7))
    for i in truth:
        assert np.abs(found[i] - apply_homography(H, truth[i] + 0.5) + 0.5).max() < 0.5
    assert marker_bits(3).shape == (6, 6) and marker_bits(3)[0].all()
    with pytest.raises(PatchlabError):
        marker_image(60, 100)


# -- PDF geometry and QR -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("paper", ["a4", "letter"])
def test_patch_pdf_geometry_to_0_1_mm(tmp_path, paper):
    result = print_patch(_patch(64, 80), size_mm=100, paper=paper, copies_sizes=[120, 60],
                         meta={"target": "toaster", "model": "efficientnet_lite0"}, name="p", png_dpi=None)
    pdf = tmp_path / "s.pdf"
    save_print(result, pdf)
    man = result.manifest
    for p in range(man.n_pages):
        parsed = parse_pdf_page(pdf, p)
        assert np.allclose(parsed["size_mm"], paper_size(paper), atol=TOL_MM)
        placed = sorted(parsed["images"])
        expected = sorted(c.rect_mm for c in man.page_cells(p))
        assert len(placed) == len(expected) and len(expected) > 0
        for got, want in zip(placed, expected):
            assert np.allclose(got, want, atol=TOL_MM), (got, want)
        widths = sorted(round(r[2]) for r in placed)
        assert widths == sorted(round(c.meta["size_mm"]) for c in man.page_cells(p))
        for c in man.page_cells(p):  # the placed height keeps the patch aspect (64/80)
            assert abs(c.rect_mm[3] - c.rect_mm[2] * 64 / 80) < TOL_MM
        for spec in man.markers:
            bbox, bits = marker_from_rects(parsed["rects"], spec)
            assert np.allclose(bbox, (spec.x_mm, spec.y_mm, spec.size_mm, spec.size_mm), atol=TOL_MM), (spec, bbox)
            assert (bits == marker_bits(spec.id)).all()
        bx, by, bw, bh = scale_bar_rect(man.page_mm)
        baseline = [r for r in parsed["rects"] if abs(r[2] - 100) < 1 and r[3] < 1]
        assert baseline and abs(baseline[0][2] - 100.0) < TOL_MM and abs(baseline[0][0] - bx) < TOL_MM


def test_qr_decodes_to_metadata_and_png_has_dpi(patch_sheet):
    from PIL import Image

    result, pdf = patch_sheet
    raster = render_pdf_page(pdf, 150)
    meta = read_payload(raster)
    assert meta == result.manifest.qr_meta(0)
    assert meta["sheet"] == result.manifest.sheet_id and meta["patch"] == "toaster_test"
    assert meta["size_mm"] == [100, 50] and meta["target"] == "toaster" and meta["model"] == "efficientnet_lite0"
    assert decode_payload("not ours") is None
    png = Image.open(result.files["png"])
    assert png.size == (round(100 / 25.4 * 300), round(80 / 25.4 * 300)) and png.mode == "RGBA"
    assert abs(png.info["dpi"][0] - 300) < 0.01
    saved = json.loads(Path(result.files["manifest"]).read_text())
    assert saved["sheet_id"] == result.manifest.sheet_id and saved["kind"] == "patch"


def test_direct_render_matches_pdf_render(patch_sheet):
    result, pdf = patch_sheet
    dpi = 150
    s = dpi / 25.4
    poppler = detect_markers(render_pdf_page(pdf, dpi)[..., ::-1])
    direct = detect_markers(render_page(result.pages[0], dpi=dpi)[..., ::-1])
    for spec in result.manifest.markers:
        for found in (poppler, direct):
            assert np.abs((found[spec.id] + 0.5) / s - spec.corners_mm()).max() < 0.15


# -- simulated photos --------------------------------------------------------------------------------------------------
def test_markers_rectification_and_cell_crops_over_100_simulated_photos(patch_sheet):
    """Tilt up to 35 deg, 2-6 MP, blur, noise, JPEG 70: markers in >= 95 of 100 draws, page corners within 1 mm,
    every Kurakin grid cell located within 2 % of its size, QR read in >= 95 % of draws.
    Measured (same loop): markers 100/100, QR 99/100, corner error median 0.02 mm / max 0.39 mm, cell error max 0.55 %."""
    from patchlab.physical.kurakin import grid_slots

    result, _ = patch_sheet
    page = result.pages[0]
    raster = render_page(page, px_per_mm=5)
    cells = [(x, y, 60.0, 60.0) for x, y in grid_slots("a4", 60.0)]
    cond = PhotoConditions()
    assert cond.tilt_deg == (0.0, 35.0) and cond.megapixels == (2.0, 6.0) and cond.jpeg_quality == (70, 70)
    from patchlab.physical.photo_eval import _read_qr_on_page

    found, corner_err, cell_err, tilts, qr_ok, qr_tries = 0, [], [], [], 0, 0
    for seed in range(100):
        photo = simulate_photo(raster, page.size_mm, seed=seed)
        mp = photo.image.shape[0] * photo.image.shape[1] / 1e6
        assert 1.95 <= mp <= 6.05
        tilts.append(photo.params["tilt_deg"])
        markers = detect_markers(photo.bgr)
        if not all(i in markers for i in range(4)):
            continue
        found += 1
        fit = fit_page(markers, result.manifest.markers, image_shape=photo.image.shape[:2])
        w, h = page.size_mm
        corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], float)
        corner_err.append(np.linalg.norm(fit.to_page(apply_homography(photo.H, corners)) - corners, axis=1).max())
        for x, y, cw, ch in cells:
            quad = np.array([[x, y], [x + cw, y], [x + cw, y + ch], [x, y + ch]])
            err = np.linalg.norm(fit.to_page(apply_homography(photo.H, quad)) - quad, axis=1).max()
            cell_err.append(err / cw)
        if seed % 2 == 0:  # the QR code is read from its rectified region (every other draw, to save time)
            qr_tries += 1
            qr_ok += _read_qr_on_page(photo.image, fit) == result.manifest.qr_meta(0)
    assert qr_ok >= 0.95 * qr_tries, f"QR read in {qr_ok}/{qr_tries} draws"
    assert max(tilts) > 30
    assert found >= 95, f"markers found in {found}/100 draws"
    assert max(corner_err) < 1.0, f"page corner error up to {max(corner_err):.3f} mm"
    assert max(cell_err) < 0.02, f"cell crop error up to {100 * max(cell_err):.2f}% of the cell"


def test_print_scale_is_measured_from_paper_edges(patch_sheet, lite0):
    from patchlab.physical.photo_eval import evaluate_photo

    result, _ = patch_sheet
    raster = render_page(result.pages[0], px_per_mm=5)
    for scale, seed in [(0.97, 1), (1.0, 2)]:
        photo = simulate_photo(raster, result.pages[0].size_mm, seed=seed, conditions=PhotoConditions(print_scale=scale))
        r = evaluate_photo(photo.image, annotate=True, model=lite0)  # identified from the QR code alone
        assert r.sheet_id == result.manifest.sheet_id
        assert abs(r.scale["print_scale"] - scale) < 0.006, r.scale
        assert r.patches and r.patches[0]["apparent_px"][0] > 50 and r.annotated.ndim == 3


# -- calibration -------------------------------------------------------------------------------------------------------
def test_calibration_recovers_synthetic_printer_within_delta_e_2(tmp_path):
    import torch

    from patchlab.eot.colour import ColourModel
    from patchlab.physical.calibration import delta_e2000, fit_calibration, make_chart

    pdf, manifest, pages = make_chart("a4")
    assert len(manifest.cells) >= 300
    raster = render_page(pages[0], px_per_mm=5)
    printer = synthetic_printer("mild")  # known: gamut compression, channel crosstalk, tone curve
    photo = simulate_photo(raster, pages[0].size_mm, seed=5, printer=printer,
                           conditions=PhotoConditions(tilt_deg=(20, 30)))
    result = fit_calibration(photo.image)  # chart found from its QR code
    assert result.holdout_delta_e["mean"] < 2.0, result.holdout_delta_e
    assert result.identity_delta_e["mean"] > 5.0  # the transform is far from identity, so the test can fail
    # the model also matches the true transform (up to the photo's global white balance) on unseen colours
    rng = np.random.default_rng(1)
    probe = rng.random((200, 3))
    white_model = result.model.apply_colours(torch.ones(1, 3)).numpy()[0]
    white_true = printer(np.ones((1, 3)))[0]
    pred = result.model.apply_colours(torch.as_tensor(probe, dtype=torch.float32)).numpy()
    true = printer(probe) * (white_model / white_true)
    assert np.median(delta_e2000(pred, true)) < 2.0
    path = result.model.to_json(tmp_path / "colour.json")
    again = ColourModel.from_json(path)
    assert again.palette is not None and len(again.palette) == len(manifest.cells)


# -- bad photos --------------------------------------------------------------------------------------------------------
def _huge_png_header(path: Path, w: int, h: int) -> Path:
    """A PNG whose header claims w x h pixels (no need to allocate them)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
                     + chunk(b"IEND", b""))
    return path


def test_bad_photos_give_clear_errors(tmp_path, patch_sheet, imagenet_dir, lite0):
    from patchlab.physical.photo_eval import evaluate_photo

    unrelated = sorted(imagenet_dir.glob("*.jpg"))[0]
    with pytest.raises(PatchlabError, match="no patchlab sheet markers found"):
        evaluate_photo(unrelated)
    with pytest.raises(PatchlabError, match="MP limit|too large"):
        evaluate_photo(_huge_png_header(tmp_path / "huge.png", 20000, 20000))
    with pytest.raises(PatchlabError, match="not an image"):
        (tmp_path / "x.jpg").write_bytes(b"hello")
        evaluate_photo(tmp_path / "x.jpg")
    result, _ = patch_sheet
    photo = simulate_photo(render_page(result.pages[0], px_per_mm=5), result.pages[0].size_mm, seed=7)
    img = photo.image.copy()
    quad = apply_homography(photo.H, result.manifest.markers[2].corners_mm()).astype(np.int32)
    cv2.fillConvexPoly(img, quad, (200, 200, 200))  # cover marker 2
    with pytest.raises(PatchlabError, match=r"found markers \[0, 1, 3\] of \[0, 1, 2, 3\]; missing \[2\]"):
        evaluate_photo(img)
    r = evaluate_photo(img, min_markers=3, annotate=False, model=lite0)
    assert r.fit.missing_ids == [2]


def test_cli_print_simulate_photo_eval(tmp_path, imagenet_dir, capsys):
    from PIL import Image

    from patchlab.cli import main

    png = tmp_path / "toaster.png"
    Image.fromarray(_patch(48, 48), "RGBA").save(png)
    (tmp_path / "toaster.json").write_text(json.dumps({"target": "toaster", "model": "efficientnet_lite0"}))
    pdf = tmp_path / "sheet.pdf"
    assert main(["print", str(png), "--size-mm", "80", "--copies-sizes", "40,80", "--out", str(pdf), "--dpi", "200"]) == 0
    assert pdf.is_file() and (tmp_path / "sheet.sheet.json").is_file() and (tmp_path / "sheet.print.png").is_file()
    photo = tmp_path / "photo.jpg"
    assert main(["simulate-photo", str(pdf), "--out", str(photo), "--seed", "4", "--dpi", "100"]) == 0
    capsys.readouterr()
    ann = tmp_path / "ann.png"
    assert main(["photo-eval", str(photo), "--json", "--annotated", str(ann)]) == 0
    out = json.loads(capsys.readouterr().out)
    rec = out["photos"][0]
    assert rec["kind"] == "patch" and rec["found_markers"] == [0, 1, 2, 3] and rec["missing_markers"] == []
    assert len(rec["patches"]) == 2 and rec["scene"]["top5"] and rec["qr"]["target"] == "toaster"
    assert rec["scene"]["target_index"] == 859 and isinstance(rec["scene"]["target_is_top1"], bool)
    assert abs(rec["print_scale"] - 1) < 0.006 and ann.is_file()
    unrelated = sorted(imagenet_dir.glob("*.jpg"))[0]
    assert main(["photo-eval", str(unrelated)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("patchlab: error:") and "no patchlab sheet markers" in err and "\n" not in err
    chart = tmp_path / "chart.pdf"
    assert main(["calibrate", "chart", "--out", str(chart), "--levels", "5"]) == 0
    assert chart.is_file() and json.loads((tmp_path / "chart.sheet.json").read_text())["kind"] == "chart"
