"""The defense hook of the live classifier: defended prediction and certificate per frame, in the recording."""

from __future__ import annotations

import json

import pytest

from patchlab.errors import PatchlabError


@pytest.fixture(scope="module")
def frames():
    from patchlab.simulate import SyntheticScene

    scene = SyntheticScene(size=(320, 240))
    return [scene.frame(i).image for i in range(3)]


def test_frames_carry_the_defended_prediction_and_the_recording_the_defense(lite0, frames, tmp_path):
    from patchlab.capture import EagerBackend, LiveState, Recorder, process_frame
    from patchlab.defenses.live import LiveDefense

    guard = LiveDefense("patchcleanser", lite0, patch_area=0.1, masks=2)  # 4 masks: at most 10 passes a frame
    state = LiveState(EagerBackend(lite0), target="toaster", defense=guard)
    rec = Recorder(tmp_path / "rec", meta={"defense": guard.name})
    for f in frames:
        annotated, result = process_frame(f, state)
        assert result.defense == "patchcleanser" and isinstance(result.certified, bool)
        assert result.defended_label == lite0.labels[result.defended_index]
        assert result.is_target == (result.defended_index == state.target_index)
        assert annotated.shape == f.shape
        rec.write(result)
    rec.close()
    summary = json.loads((tmp_path / "rec" / "summary.json").read_text())
    assert summary["attack"]["defense"] == "patchcleanser" and summary["attack"]["certified"]["n"] == 3
    lgs = LiveState(EagerBackend(lite0), defense=LiveDefense("lgs", lite0))
    _, result = process_frame(frames[0], lgs)
    assert result.defense == "lgs" and result.certified is None
    with pytest.raises(PatchlabError, match="unknown defense"):
        LiveDefense("blur", lite0)


def test_camera_cli_refuses_an_unknown_defense_in_one_line(capsys):
    from patchlab.cli import main

    assert main(["camera", "--source", "synthetic:2", "--headless", "--defense", "blur", "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("patchlab: error:") and "unknown defense" in err and "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (["defend", "certify", "patchcleanser", "--images", "/nonexistent", "--limit", "1"], "nonexistent"),
    (["defend", "certify", "patchcleanser", "--images", ".", "--patch-area", "1.5"], "patch-area"),
    (["defend", "train", "adversarial", "--method", "magic", "--epochs", "1"], "method"),
    (["defend", "evaluate", "transforms", "--images", ".", "--defenses", "none,blur"], "blur"),
])
def test_defend_cli_bad_input_is_one_line(args, message, capsys):
    from patchlab.cli import main

    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.strip().startswith("patchlab: error:") and message in err and "Traceback" not in err
