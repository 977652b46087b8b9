"""AppTest: the Transfer & theft page runs its experiments on the built-in digits and shows the figures."""

from __future__ import annotations

import pytest

from tests.apptest import open_page


@pytest.fixture
def page(transfer_cache, monkeypatch):
    monkeypatch.setenv("PATCHLAB_CACHE", str(transfer_cache))  # the page caches trained models there (shared)
    return open_page("transfer")


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
    assert res["png"][:4] == b"\x89PNG" and len(at.get("image")) >= 1


def test_ensemble_algorithms_and_theft_tabs(page):
    """The other tabs at the page's small sizes: each shows its figure and its numbers (models cached by the
    tests above: the digits8 zoo and victim are not trained again)."""
    at = page
    at.button(key="tr_e_run").click().run()
    assert not at.exception, at.exception
    ens = at.session_state["tr_results"]["ensemble"]
    assert [r["row"] for r in ens["data"]["rows"]][:3] == ["-d8-cnn", "-d8-mlp", "-d8-logreg"], ens["data"]["rows"]
    assert ens["data"]["n"] == 300 and ens["png"][:4] == b"\x89PNG"
    at.button(key="tr_a_run").click().run()
    assert not at.exception, at.exception
    alg = at.session_state["tr_results"]["algorithms"]
    assert len(alg["data"]["sources"]) == 5 and len(alg["data"]["cells"]) == 5 * 6  # targets + majority vote
    assert [s["queries"] for s in alg["data"]["substitutes"].values()] == [400, 400]  # tree, kNN: 50 seeds, 3 rounds
    assert alg["png"][:4] == b"\x89PNG"
    at.slider(key="tr_t_eps").set_value(0.2)
    at.button(key="tr_t_pp").click().run()
    assert not at.exception, at.exception
    theft = at.session_state["tr_results"]["theft"]["data"]
    rows = {r["source"]: r["success_rate"] for r in theft["rows"]}
    assert theft["eps"] == pytest.approx(0.2) and theft["extraction"]["queries"] == 200
    # white-box on the victim is the ceiling of what the stolen copy transfers
    assert rows["white-box"] >= rows["stolen copy"] - 0.05, rows
    assert len(at.get("image")) >= 3  # ensemble, algorithms and theft figures on the page
