"""AppTest: the Print & photo page makes real sheets, photographs them (simulated print-and-photo), scores the
photos (per-cell results and destruction rates), fits a colour model, and rejects bad uploads with a message."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from tests.apptest import APP_ENTRY, open_page


def page():
    return open_page("print_photo")


def errors(at) -> list[str]:
    return [e.value for e in at.error]


def test_kurakin_sheet_photo_eval_reports_cells_and_bad_uploads():
    at = page()
    at.number_input(key="pp_k_n").set_value(1)
    at.multiselect(key="pp_k_attacks").set_value(["fgsm"])
    at.text_input(key="pp_k_eps").set_value("8, 16")
    at.button(key="pp_make_kurakin").click().run()
    assert not at.exception and not errors(at), (at.exception, errors(at))
    (sheet_id, sheet), = at.session_state["pp_sheets"].items()
    assert sheet["kind"] == "kurakin" and len(sheet["manifest"].cells) == 3 and sheet["pdf"].startswith(b"%PDF")

    at.button(key="pp_eval_simulate").click().run()
    at.button(key="pp_score").click().run()
    assert not at.exception and not errors(at), (at.exception, errors(at))
    summary = at.session_state["pp_eval_summary"]
    assert summary["n"] == 3
    assert [(r["attack"], r["eps_255"]) for r in summary["table"]] == [("clean", 0.0), ("fgsm", 8.0), ("fgsm", 16.0)]
    assert all(0 <= r["photo_accuracy"] <= 1 for r in summary["table"])
    assert len(at.dataframe) >= 2  # per-cell table and destruction table

    # the same photo as a real upload, next to a broken file and a photo without a sheet
    name, jpeg = at.session_state["pp_eval_sim"]
    from patchlab.data import load_sample, to_uint8_hwc

    buf = io.BytesIO()
    Image.fromarray(to_uint8_hwc(load_sample("coffee").image)).save(buf, format="PNG")
    at.file_uploader(key="pp_eval_photos").set_value([("sheet.jpg", jpeg, "image/jpeg"),
                                                      ("coffee.png", buf.getvalue(), "image/png")]).run()
    at.button(key="pp_score").click().run()
    assert not at.exception, at.exception
    assert any("no patchlab sheet markers found" in e for e in errors(at)), errors(at)
    assert at.session_state["pp_eval_count"] == 2  # the upload and the simulated photo were scored

    at.file_uploader(key="pp_eval_photos").upload("renamed.jpg", b"GIF89a not really", "image/jpeg").run()
    assert not at.exception, at.exception
    assert any("renamed.jpg: not a valid image" in e for e in errors(at)), errors(at)


def test_patch_sheet_and_colour_chart():
    at = page()
    # a patch uploaded as PNG, laid out at 80 mm, photographed and read back from its QR code
    rng = np.random.default_rng(0)
    rgba = np.dstack([rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), np.full((32, 32), 255, np.uint8)])
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    at.selectbox(key="pp_patch_choice").set_value("upload a patch PNG").run()
    at.file_uploader(key="pp_patch_png").upload("noise.png", buf.getvalue(), "image/png").run()
    at.number_input(key="pp_size").set_value(80.0)
    at.button(key="pp_make_patch").click().run()
    assert not at.exception and not errors(at), (at.exception, errors(at))
    sheet = at.session_state["pp_sheets"][at.session_state["pp_last_sheet"]]
    assert sheet["kind"] == "patch" and sheet["manifest"].cells[0].rect_mm[2] == 80.0
    at.selectbox(key=[w.key for w in at.selectbox if w.key.startswith("pp_eval_manifest")][0]).set_value(
        "read the QR code on the photo")
    at.button(key="pp_eval_simulate").click().run()
    at.button(key="pp_score").click().run()
    assert not at.exception and not errors(at), (at.exception, errors(at))
    assert at.session_state["pp_eval_count"] == 1

    at.button(key="pp_make_chart").click().run()
    at.button(key="pp_cal_simulate").click().run()
    at.button(key="pp_fit").click().run()
    assert not at.exception and not errors(at), (at.exception, errors(at))
    cal = at.session_state["pp_calibration"]
    # docs/physical.md: the app's simulated chart photo (seed 0) fits to a held-out median ΔE2000 of 0.61
    # (seeds 0-3: 0.61-0.99) against 9.7 without a model
    assert cal.n_swatches >= 100 and cal.holdout_delta_e["median"] < 1.0 and cal.identity_delta_e["median"] > 5, (
        cal.holdout_delta_e, cal.identity_delta_e)


def test_photo_of_the_shipped_kurakin_pdf_with_its_shipped_manifest():
    """The shipped printables/ sheet, rasterised from its PDF and photographed (simulated), scored in the app."""
    import json

    import pytest

    from patchlab.physical.layout import render_pdf_page
    from patchlab.simulate.photo import simulate_photo

    repo = Path(APP_ENTRY).parents[2]
    pdf, manifest = repo / "printables" / "kurakin-sheet-a4.pdf", repo / "printables" / "kurakin-sheet-a4.sheet.json"
    if not (pdf.is_file() and manifest.is_file()):
        pytest.fail("printables/kurakin-sheet-a4.pdf/.json are missing")
    n_cells = sum(c["page"] == 0 for c in json.loads(manifest.read_text())["cells"])
    photo = simulate_photo(render_pdf_page(pdf, dpi=100), (210.0, 297.0), seed=3)

    at = page()
    box = next(w for w in at.selectbox if w.key.startswith("pp_eval_manifest"))
    box.set_value("shipped: printables/kurakin-sheet-a4.sheet.json").run()
    at.file_uploader(key="pp_eval_photos").upload("page1.jpg", photo.jpeg, "image/jpeg").run()
    at.button(key="pp_score").click().run()
    assert not at.exception and not errors(at), (at.exception, errors(at))
    summary = at.session_state["pp_eval_summary"]
    assert summary["n"] == n_cells and at.session_state["pp_eval_count"] == 1
    clean = next(r for r in summary["table"] if r["attack"] == "clean")
    assert clean["n"] >= 1 and clean["digital_accuracy"] == 1.0
