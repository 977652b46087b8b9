"""AppTest: the Digital attacks page runs real attacks on EfficientNet-Lite0 and shows the flipped label."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.apptest import open_page


@pytest.fixture
def attacks_page():
    return open_page("attacks")


def test_targeted_pgd_flips_the_label(attacks_page):
    at = attacks_page
    at.selectbox(key="atk_sample").set_value("chelsea")
    at.selectbox(key="atk_name").set_value("pgd")
    at.slider(key="atk_eps").set_value(8.0)
    at.number_input(key="atk_steps").set_value(10)
    at.selectbox(key="atk_target").set_value("toaster")
    at.button(key="atk_run").click().run()
    assert not at.exception, at.exception
    res = at.session_state["atk_result"]
    labels_before, labels_after = int(res["probs"].argmax()), int(res["adv_probs"].argmax())
    assert res["success"] and labels_after == res["target"] != labels_before
    assert res["linf"] <= 8 / 255 + 1e-5
    assert "Attack succeeded" in at.success[0].value and "toaster" in at.success[0].value
    # the page shows original / perturbation / adversarial and offers the PNG
    assert at.get("download_button"), "no download button"
    bars = [b.proto.text for b in at.get("progress")]
    assert len(bars) == 10 and any(t.startswith("toaster ◀ target") for t in bars[5:]), bars


def test_fgsm_untargeted_on_upload_and_bad_upload(attacks_page):
    at = attacks_page
    at.radio(key="atk_source").set_value("Upload").run()
    bad = at.file_uploader(key="atk_upload")
    bad.upload("photo.png", b"definitely not a png", "image/png").run()
    assert not at.exception
    assert any("not a valid image" in e.value for e in at.error), [e.value for e in at.error]

    from patchlab.data import load_sample, to_uint8_hwc

    buf = io.BytesIO()
    Image.fromarray(to_uint8_hwc(load_sample("coffee").image)).save(buf, format="JPEG", quality=95)
    at.file_uploader(key="atk_upload").upload("coffee.jpg", buf.getvalue(), "image/jpeg").run()
    assert not at.error
    at.selectbox(key="atk_name").set_value("fgsm")
    at.slider(key="atk_eps").set_value(4.0)
    at.button(key="atk_run").click().run()
    assert not at.exception, at.exception
    res = at.session_state["atk_result"]
    assert res["image_name"] == "coffee" and res["queries"] == 1
    assert res["success"] == (int(res["adv_probs"].argmax()) != int(res["probs"].argmax()))
    assert abs(res["linf"] - 4 / 255) < 1e-4


def test_panda_gibbon_demo(attacks_page):
    at = attacks_page
    at.button(key="demo_panda_run").click().run()
    assert not at.exception, at.exception
    assert at.session_state["demo_panda_shown"]
    shown = at.get("json")
    assert shown and '"flipped": true' in shown[0].proto.body
