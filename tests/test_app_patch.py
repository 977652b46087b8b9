"""AppTest: the Patch studio trains a real (tiny) EOT patch in a background thread, stops, resumes, and offers
the PNG, sidecar and PDF; another session sees none of it."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from patchlab.stats import wilson_interval
from tests.apptest import open_page, wait_job

# printables/README.md, "Evaluation": the shipped patch at 10% area under `print`, 280 held-out images, EOT seed 1234
SHIPPED_SUCCESS = 0.839   # 235/280
BASELINE_SUCCESS = 0.0    # random-noise and natural-photo patches, and no patch: 0/280


def studio(steps: int, eval_every: int = 0) -> AppTest:
    at = open_page("patch_studio")
    at.selectbox(key="ps_source").set_value("built-in photos")
    at.number_input(key="ps_steps").set_value(steps)
    at.number_input(key="ps_batch").set_value(2)
    at.select_slider(key="ps_size").set_value(32)
    at.number_input(key="ps_eval").set_value(eval_every)
    at.selectbox(key="ps_eot").set_value("digital")
    return at.run()


def test_patch_job_progresses_finishes_and_sessions_are_isolated():
    at = studio(steps=4, eval_every=2)
    at.button(key="ps_start").click().run()
    assert not at.exception, at.exception
    # while it runs, a rerun of the page (any widget) does not kill it, and the page shows live progress
    snap = wait_job(at, "patch_job", lambda s: s.step >= 1 and "loss" in s.metrics)
    at.run()
    assert at.session_state["patch_job"].snapshot().active or at.session_state["patch_job"].snapshot().state == "done"
    assert any(m.label == "Step" for m in at.metric)

    other = open_page("patch_studio")  # a second browser session
    assert "patch_job" not in other.session_state
    assert any("No optimisation in this session yet" in i.value for i in other.info)

    snap = wait_job(at, "patch_job")
    assert snap.step == 4 and [s for s, m in snap.history if "loss" in m] == [1, 2, 3, 4]
    assert sum("heldout_success" in m for _, m in snap.history) == 2
    assert snap.result.path is not None and snap.result.path.is_file()
    at.run()
    assert not at.exception, at.exception
    patch = at.session_state["studio_patch"]
    assert tuple(patch["rgba"].shape) == (4, 32, 32) and patch["meta"]["target_name"] == "toaster"
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Patch PNG", "JSON sidecar", "Print-ready PDF"]
    # evaluation on unseen scenes: the 2 held-out built-in photos (training images are skipped)
    at.number_input(key="ps_eval_n").set_value(4)
    at.button(key="ps_evaluate").click().run()
    assert not at.exception, at.exception
    result = at.session_state["ps_eval_result"]
    assert result["images"] == 2 and result["skipped_training_images"] == 2
    row = result["models"]["efficientnet_lite0"]["curve"][0]
    assert row["area"] == 0.1 and row["n"] == 2 and 0 <= row["success_rate"] <= 1
    assert "patch_job" not in other.run().session_state


def test_patch_job_stops_and_resumes_from_checkpoint():
    at = studio(steps=500)
    at.button(key="ps_preview").click().run()  # the EOT preview grid: 16 draws in a 4 x 4 grid
    assert not at.exception, at.exception
    grid = at.session_state["ps_preview_img"]
    assert grid.shape[0] == 3 and grid.shape[1] == grid.shape[2] > 4 * 224 and float(grid.std()) > 0.05
    at.button(key="ps_start").click().run()
    wait_job(at, "patch_job", lambda s: s.step >= 2 and "loss" in s.metrics)
    at.button(key="ps_stop").click().run()
    assert not at.exception, at.exception
    stopped = at.session_state["patch_job"].snapshot()
    assert stopped.state == "stopped" and 2 <= stopped.step < 500
    ckpt = Path(at.session_state["patch_job_config"]["out"]).with_suffix(".ckpt.pt")
    assert ckpt.is_file()
    assert at.session_state["studio_patch"]["stopped"]

    at.number_input(key="ps_steps").set_value(stopped.step + 2).run()
    at.button(key="ps_resume").click().run()
    assert not at.exception, at.exception
    snap = wait_job(at, "patch_job")
    assert snap.step == stopped.step + 2
    assert [s for s, m in snap.history if "loss" in m] == [stopped.step + 1, stopped.step + 2]
    assert snap.result.path.is_file()


def test_shipped_patch_loads_and_beats_baselines_on_held_out_images(imagenet_dir):
    at = studio(steps=10)
    at.selectbox(key="ps_source").set_value("ImageNet sample").run()
    at.button(key="ps_load_shipped").click().run()
    assert not at.exception, at.exception
    patch = at.session_state["studio_patch"]
    assert patch["name"] == "toaster_efficientnet_lite0" and patch["meta"]["target_name"] == "toaster"
    at.number_input(key="ps_eval_n").set_value(16)
    at.button(key="ps_evaluate").click().run()
    assert not at.exception, at.exception
    result = at.session_state["ps_eval_result"]
    row = result["models"]["efficientnet_lite0"]["curve"][0]
    # 16 ImageNet images the patch was not trained on (its sidecar lists the training images, which are skipped)
    assert result["images"] == 16 and result["skipped_training_images"] > 0 and row["area"] == 0.1
    # the reported rates within a Wilson 95% margin at this n: >= 10/16 for the patch, <= 3/16 for each baseline
    n = row["n"]
    assert n == 16 and row["success_rate"] >= wilson_interval(SHIPPED_SUCCESS * n, n)[0], row
    ceiling = wilson_interval(BASELINE_SUCCESS * n, n)[1]
    for baseline in ("random_noise", "natural_photo"):
        assert row["baselines"][baseline]["success_rate"] <= ceiling, (baseline, row)
    assert result["models"]["efficientnet_lite0"]["clean_target_rate"] <= ceiling, result
    # which effects cost the misses: the same 16 images and draws, one group of effects off at a time
    at.button(key="ps_breakdown").click().run()
    assert not at.exception, at.exception
    rows = at.session_state["ps_breakdown_result"]["rows"]
    assert len(rows) == 11 and rows[0]["off"] == [] and (rows[0]["k"], rows[0]["n"]) == (row["k"], row["n"])
    assert len(at.dataframe) == 2


def test_training_can_start_from_the_shipped_patch():
    at = studio(steps=2)
    assert at.checkbox(key="ps_init_loaded").disabled  # nothing loaded yet
    at.button(key="ps_load_shipped").click().run()
    assert not at.exception, at.exception
    shipped = at.session_state["studio_patch"]["path"]
    at.checkbox(key="ps_init_loaded").check().run()
    at.button(key="ps_start").click().run()
    snap = wait_job(at, "patch_job")
    assert snap.result.meta["config"]["init"] == shipped
    assert snap.step == 2
