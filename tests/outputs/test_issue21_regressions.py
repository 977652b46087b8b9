"""The two losses issue 21 reported, as regression tests, plus reading what older versions wrote.

1. `patch train --out banana.png` then `print banana.png --out banana.pdf` replaced the patch sidecar banana.json
   with the sheet manifest; a later `patch eval` silently evaluated on the training images.
2. `camera --record rec/` run twice kept only the second run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .files import snapshot

CPU = ("--device", "cpu")


def test_print_keeps_the_patch_sidecar_and_eval_still_skips_training_images(tmp_path, monkeypatch, builtin_scenes,
                                                                           cli, lite0):
    monkeypatch.chdir(tmp_path)
    scenes = str(builtin_scenes)
    assert cli("patch", "train", "--target", "toaster", "--images", scenes, "--size", "32", "--steps", "2", "--batch",
               "2", *CPU, "--json", "--out", "banana.png")[0] == 0
    sidecar = Path("banana.patch.json").read_bytes()
    trained = json.loads(sidecar)["train_images"]
    assert cli("print", "banana.png", "--size-mm", "80", "--out", "banana.pdf")[0] == 0
    assert Path("banana.patch.json").read_bytes() == sidecar
    assert json.loads(Path("banana.sheet.json").read_text())["sheet_id"]
    code, out, _ = cli("patch", "eval", "banana.png", "--images", scenes, "--areas", "0.1", "--no-baselines", *CPU,
                       "--json")
    assert code == 0 and json.loads(out)["skipped_training_images"] == len(trained) > 0

    # an older version's layout: the sidecar was banana.json (no tag); print must leave it, eval must still read it
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy("banana.png", old / "banana.png")
    legacy = {k: v for k, v in json.loads(sidecar).items() if k not in ("artifact", "written_by")}
    (old / "banana.json").write_text(json.dumps(legacy, indent=2))
    before = snapshot(old)
    assert cli("print", old / "banana.png", "--size-mm", "80", "--out", old / "banana.pdf")[0] == 0
    after = snapshot(old)
    assert {k: after[k] for k in before} == before and "banana.sheet.json" in after
    from patchlab.patch.score import evaluate_patch

    result = evaluate_patch(old / "banana.png", scenes, models=[lite0], areas=[0.1], baselines=False)
    assert result["skipped_training_images"] == len(trained)

    # what the bug left behind (an old manifest where the sidecar was) is not taken for the sidecar
    from patchlab.patch.io import load_patch

    clobbered = tmp_path / "clobbered"
    clobbered.mkdir()
    shutil.copy("banana.png", clobbered / "banana.png")
    manifest = {k: v for k, v in json.loads(Path("banana.sheet.json").read_text()).items()
                if k not in ("artifact", "written_by")}
    (clobbered / "banana.json").write_text(json.dumps(manifest))
    assert load_patch(clobbered / "banana.png")[1] == {}


def test_two_recordings_into_one_folder_are_both_kept(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    repo = Path(__file__).resolve().parents[2]
    camera = ("camera", "--source", "synthetic:4", "--target", "toaster", "--headless", "--max-frames", "4",
              "--eager", *CPU, "--json", "--record", "rec")
    code, out, err = cli(*camera, "--patch", repo / "printables" / "toaster_efficientnet_lite0.png")  # the attack
    assert code == 0, err
    first = snapshot(tmp_path / "rec")
    assert json.loads(out)["recording"] == str(Path("rec/run-001"))
    code, out, err = cli(*camera)  # then the baseline, into the same folder
    assert code == 0, err
    assert json.loads(out)["recording"] == str(Path("rec/run-002"))
    now = snapshot(tmp_path / "rec")
    assert {k: now[k] for k in first} == first  # the first run, byte for byte
    for run, has_patch in (("run-001", True), ("run-002", False)):
        summary = json.loads((tmp_path / "rec" / run / "summary.json").read_text())
        meta = json.loads((tmp_path / "rec" / run / "meta.json").read_text())
        assert summary["attack"]["frames"] == 4 and summary["recording"] == str(Path("rec") / run)
        assert (meta["patch"] is not None) == has_patch
    # --baseline DIR with two runs is ambiguous: one line naming them, nothing recorded
    code, _, err = cli(*camera, "--baseline", "rec")
    assert code == 2 and "holds 2 recordings (run-001, run-002)" in err and not (tmp_path / "rec" / "run-003").exists()


def test_photo_eval_reads_older_manifests_and_names_a_wrong_file(tmp_path):
    from patchlab.artifacts import write_json
    from patchlab.errors import PatchlabError
    from patchlab.physical.sheets import SheetManifest

    repo = Path(__file__).resolve().parents[2]
    shipped = json.loads((repo / "printables" / "kurakin-sheet-a4.sheet.json").read_text())
    legacy = {k: v for k, v in shipped.items() if k not in ("artifact", "written_by")}
    (tmp_path / "sheet.json").write_text(json.dumps(legacy, indent=1))  # the older name and format
    old = SheetManifest.from_json(tmp_path / "sheet.json")
    new = SheetManifest.from_json(repo / "printables" / "kurakin-sheet-a4.sheet.json")
    assert old.to_dict() == new.to_dict() and old.kind == "kurakin" and len(old.cells) == 8
    write_json(tmp_path / "p.patch.json", {"target": 859}, "patch-sidecar")
    try:
        SheetManifest.from_json(tmp_path / "p.patch.json")
    except PatchlabError as exc:
        assert "is a patch sidecar" in str(exc) and "not a sheet manifest" in str(exc)
    else:
        raise AssertionError("a patch sidecar was accepted as a sheet manifest")
