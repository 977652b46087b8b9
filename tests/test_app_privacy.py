"""AppTest: the Privacy page trains a real DP-SGD model and runs LiRA in background jobs on scikit-learn's digits,
and computes ε for given settings."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.apptest import open_page, wait_job


@pytest.fixture
def page():
    return open_page("privacy")


def finish(at: AppTest, key: str):
    snap = wait_job(at, key)
    at.run()
    assert not at.exception, at.exception
    return snap


def test_dpsgd_job_reports_epsilon_and_accuracy(page):
    at = page
    at.selectbox(key="dp_data").set_value("scikit-learn digits (8x8, fastest)")
    at.selectbox(key="dp_model").set_value("mlp")
    at.select_slider(key="dp_eps").set_value(4.0)
    at.number_input(key="dp_epochs").set_value(3)
    at.button(key="dp_run").click().run()
    assert not at.exception, at.exception
    snap = finish(at, "dp_job")
    s = snap.result["summary"]
    assert 3.9 <= s["epsilon"] <= 4.0 and s["epochs_done"] == 3
    assert [m["epsilon"] for _, m in snap.history][-1] == pytest.approx(s["epsilon"], rel=1e-6)
    assert snap.result["accuracy"] > 0.5 and "baseline" in snap.result
    labels = [m.label for m in at.metric]
    assert "ε spent (RDP)" in labels and "Test accuracy" in labels
    assert at.get("imgs") or at.get("image")


def test_mia_job_and_epsilon_calculator(page):
    at = page
    at.selectbox(key="mia_data").set_value("scikit-learn digits (8x8, fastest)")
    at.number_input(key="mia_shadows").set_value(2)
    at.number_input(key="mia_pool").set_value(200)
    at.number_input(key="mia_epochs").set_value(20)
    at.button(key="mia_run").click().run()
    assert not at.exception, at.exception
    snap = finish(at, "mia_job")
    assert snap.result["summary"]["n"] == 3 * 200 and not snap.result["bugs"]
    table = at.dataframe[0].value
    assert list(table["attack"])[:2] == ["loss", "lira_online"] and table["AUC"].between(0, 1).all()

    at.number_input(key="eps_sigma").set_value(1.1)
    at.number_input(key="eps_batch").set_value(256)
    at.number_input(key="eps_n").set_value(60_000)
    at.number_input(key="eps_epochs").set_value(60.0)
    at.button(key="eps_run").click().run()
    row = at.session_state["eps_result"]
    assert row["ours"] == pytest.approx(row["opacus_rdp"], rel=1e-6) and 1 < row["ours"] < 5


def test_pate_job_with_scatter_linear_teachers(page):
    at = page
    at.selectbox(key="pate_data").set_value("scikit-learn digits (8x8, fastest)")
    at.selectbox(key="pate_agg").set_value("gnmax")
    at.selectbox(key="pate_kind").set_value("scatter-linear")
    at.number_input(key="pate_queries").set_value(100)
    at.button(key="pate_run").click().run()
    assert not at.exception, at.exception
    snap = finish(at, "pate_job")
    s = snap.result["summary"]
    assert s["teacher"] == "scatter-linear" and s["answered"] == 100 and s["teacher_accuracy_mean"] > 0.7
    assert s["epsilon"] <= s["epsilon_data_independent"]
