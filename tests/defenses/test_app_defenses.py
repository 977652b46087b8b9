"""AppTest: the Defenses page runs PatchCleanser and an input transformation on a built-in photo, and the Live
camera page's defense selector reaches the capture pipeline."""

from __future__ import annotations

import pytest

from tests.apptest import open_page


@pytest.fixture
def defenses_page():
    return open_page("defenses")


def test_patchcleanser_certifies_a_clean_photo_and_shows_the_masks(defenses_page):
    at = defenses_page
    at.selectbox(key="pc_sample").set_value("chelsea")
    at.slider(key="pc_k").set_value(2)  # 4 masks, 10 passes: the same code path, quick on a busy machine
    at.select_slider(key="pc_area").set_value(0.05)
    at.button(key="pc_run").click().run()
    assert not at.exception, at.exception
    res = at.session_state["pc_result"]
    v = res["verdict"]
    assert res["settings"]["masks"] == 4 and 4 <= v["passes"] <= 10
    labels_shown = [m.value for m in at.metric]
    assert v["undefended"] >= 0 and len(labels_shown) >= 4
    assert (at.success if v["certified"] else at.warning), "no verdict shown"
    assert res["grid"].shape == (224, 224, 3)


def test_transformation_tab_shows_before_and_after(defenses_page):
    at = defenses_page
    at.selectbox(key="tr_sample").set_value("chelsea")
    at.selectbox(key="tr_name").set_value("jpeg").run()
    assert not at.exception, at.exception
    bars = [b.proto.text for b in at.get("progress")]
    assert len(bars) == 10, bars  # top-5 before and after the transformation
    assert any("Egyptian cat" in b or "tabby" in b or "tiger cat" in b for b in bars), bars


def test_live_page_has_a_defense_selector():
    at = open_page("live_camera")
    assert not at.exception, at.exception
    at.selectbox(key="live_defense").set_value("lgs").run()
    assert not at.exception, at.exception
    state = at.session_state["live_state"]
    assert state.defense is not None and state.defense.name == "lgs"
