"""AppTest: the Poisoning page prepares the quick task in a background job, explains a prediction with influence
checked against leave-one-out, runs Koh & Liang's attack to a flipped target and crafts a feature-collision
poison that makes its target the base class."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.apptest import open_page, wait_job


def wait(at: AppTest):
    wait_job(at, "pz_job", timeout=300)
    return at.run()


def test_poisoning_page_end_to_end(small_task, poison_cache):
    at = open_page("poisoning")
    assert any("Prepare the task" in i.value for i in at.info)
    assert at.radio(key="pz_size").value == "quick"
    at.button(key="pz_prepare").click().run()
    at = wait(at)
    assert not at.exception, at.exception
    task, clean = at.session_state["pz_task"]
    assert len(task.train) == len(small_task.train) and any("training and" in s.value for s in at.success)

    at.number_input(key="pz_infl_loo").set_value(10)
    at.button(key="pz_infl_run").click().run()
    assert not at.exception, at.exception
    ex = at.session_state["pz_infl"]
    assert ex.checks[0].n == 10 and ex.checks[0].pearson > 0.9
    assert any(m.label.startswith("Influence vs leave-one-out") for m in at.metric)

    at.number_input(key="pz_kl_iters").set_value(30)
    at.button(key="pz_kl_run").click().run()
    at = wait(at)
    assert not at.exception, at.exception
    out = at.session_state["pz_kl"]
    assert out.result.flipped and any(s.value.startswith("Flipped:") for s in at.success)
    assert [b.proto.label for b in at.get("download_button")] == ["Poison PNG"]

    at.number_input(key="pz_fc_iters").set_value(40)
    at.button(key="pz_fc_run").click().run()
    at = wait(at)
    assert not at.exception, at.exception
    po = at.session_state["pz_fc"]
    assert po.result.success and po.result.base_label != po.result.target_label
    assert any(s.value.startswith("Misclassified as the base class") for s in at.success)

    other = open_page("poisoning")  # another browser session sees none of it
    assert "pz_task" not in other.session_state
