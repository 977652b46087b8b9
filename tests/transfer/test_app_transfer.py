"""AppTest: the Transfer & theft page runs its experiments on the built-in digits and shows the figures."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ENTRY = str(Path(__file__).resolve().parents[2] / "patchlab" / "app" / "streamlit_app.py")


@pytest.fixture
def page(transfer_cache, monkeypatch):
    monkeypatch.setenv("PATCHLAB_CACHE", str(transfer_cache))  # the page caches trained models there (shared)
    at = AppTest.from_file(ENTRY, default_timeout=300).run()
    at.switch_page("app_pages/transfer.py").run()
    assert not at.exception, at.exception
    return at


def test_substitute_and_equation_solving(page):
    at = page
    assert at.title[0].value == "Transfer & theft"
    at.number_input(key="tr_s_seeds").set_value(20)
    at.number_input(key="tr_s_rounds").set_value(1)
    at.button(key="tr_s_run").click().run()
    assert not at.exception, at.exception
    sub = at.session_state["tr_results"]["substitute"]
    assert sub["data"]["queries"] == 40 and len(sub["data"]["curve"]) == 2
    assert sub["png"][:4] == b"\x89PNG"
    assert any("points vs same-norm noise" in str(m.proto.delta) for m in at.metric)
    at.button(key="tr_t_lr").click().run()
    assert not at.exception, at.exception
    lr = at.session_state["tr_results"]["lr"]["data"]
    assert lr["queries"] == 65 and lr["max_abs_error"] < 1e-6
    assert any(m.label == "Largest weight error" for m in at.metric)
    bars = [p.proto.text for p in at.get("progress")]
    assert any("done in" in t for t in bars), bars


def test_matrix_on_builtin_digits(page):
    at = page
    at.selectbox(key="tr_m_attack").set_value("fgsm")
    at.button(key="tr_m_run").click().run()
    assert not at.exception, at.exception
    res = at.session_state["tr_results"]["matrix"]
    assert res["data"]["sources"] == ["d8-cnn", "d8-mlp", "d8-logreg"] and len(res["data"]["cells"]) == 9
    assert at.get("imgs") or res["png"]
