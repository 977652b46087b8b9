"""patchlab.artifacts: tags, identification (also of older versions' outputs), the may-I-write-here guard,
JSONL journals and run folders."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
import torch

from patchlab.artifacts import (KINDS, OutputExists, append_jsonl, check_output, check_outputs, content_stem,
                                default_path, download_name, identify, next_run_folder, read_jsonl,
                                repair_jsonl_tail, run_folders, save_figure, tag, tag_jpeg_bytes, tag_png_bytes,
                                write_bytes, write_json)
from patchlab.errors import PatchlabError


def test_every_format_carries_its_tag(tmp_path):
    from matplotlib.figure import Figure
    from PIL import Image

    from patchlab.data import png_bytes, save_image
    from patchlab.physical.calibration import make_chart

    save_image(torch.rand(4, 8, 8), tmp_path / "p.png", kind="patch")
    assert identify(tmp_path / "p.png") == identify(tmp_path / "p.png") and \
        (identify(tmp_path / "p.png").kind, identify(tmp_path / "p.png").written_by) == ("patch", "patchlab patch train")
    save_image(torch.rand(3, 8, 8), tmp_path / "j.jpg", kind="photo")
    assert identify(tmp_path / "j.jpg").kind == "photo" and Image.open(tmp_path / "j.jpg").size == (8, 8)
    write_json(tmp_path / "e.eval.json", {"x": 1, "artifact": "ignored"}, "patch-eval")
    data = json.loads((tmp_path / "e.eval.json").read_text())
    assert list(data)[:2] == ["artifact", "written_by"] and data["artifact"] == "patch-eval" and data["x"] == 1
    fig = Figure()
    fig.subplots().plot([0, 1])
    save_figure(fig, tmp_path / "f.png", "figure", "patchlab attack-demo")
    assert identify(tmp_path / "f.png").kind == "figure"
    pdf, manifest, _ = make_chart("a4", 3)
    write_bytes(tmp_path / "c.pdf", pdf)
    manifest.to_json(tmp_path / "c.sheet.json")
    assert (identify(tmp_path / "c.pdf").kind, identify(tmp_path / "c.pdf").written_by) == \
        ("sheet-pdf", "patchlab calibrate chart")
    assert identify(tmp_path / "c.sheet.json").kind == "sheet-manifest"
    # tags added to encoded bytes leave the pixels alone
    raw = png_bytes(torch.rand(3, 5, 7))
    tagged = tag_png_bytes(raw, "adversarial")
    write_bytes(tmp_path / "t.png", tagged)
    assert identify(tmp_path / "t.png").kind == "adversarial"
    import io

    import numpy as np

    assert np.array_equal(np.asarray(Image.open(io.BytesIO(raw))), np.asarray(Image.open(tmp_path / "t.png")))
    jpeg = tag_jpeg_bytes((tmp_path / "j.jpg").read_bytes(), "photo", "patchlab app")
    write_bytes(tmp_path / "k.jpg", jpeg)
    assert identify(tmp_path / "k.jpg").written_by == "patchlab app"
    assert identify(tmp_path / "nothing.png") is None
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert identify(tmp_path / "junk.png") is None


def test_older_versions_outputs_are_recognised(tmp_path):
    """Files without tags, as older versions wrote them, are known by their content."""
    repo = Path(__file__).resolve().parents[2]
    old_manifest = json.loads((repo / "printables" / "kurakin-sheet-a4.sheet.json").read_text())
    old_manifest = {k: v for k, v in old_manifest.items() if k not in ("artifact", "written_by")}
    (tmp_path / "sheet.json").write_text(json.dumps(old_manifest))
    found = identify(tmp_path / "sheet.json")
    assert (found.kind, found.written_by, found.legacy) == ("sheet-manifest", "patchlab sheet", True)
    (tmp_path / "banana.json").write_text(json.dumps({"kind": "adversarial_patch", "target": 859}))
    (tmp_path / "banana.png").write_bytes((repo / "printables" / "toaster_efficientnet_lite0.png").read_bytes())
    assert identify(tmp_path / "banana.json").kind == "patch-sidecar"
    assert identify(tmp_path / "banana.png").kind == "patch"  # an untagged PNG, known by its sidecar
    (tmp_path / "photo.truth.json").write_text(json.dumps({"photo": "photo.jpg", "H_mm_to_px": [[1]]}))
    assert identify(tmp_path / "photo.truth.json").kind == "photo-truth"
    assert identify(repo / "printables" / "kurakin-sheet-a4.pdf").written_by == "patchlab sheet"  # by its title
    (tmp_path / "notes.json").write_text(json.dumps({"mine": True}))
    assert identify(tmp_path / "notes.json") is None


def test_guard_refuses_other_kinds_and_needs_force_for_its_own(tmp_path):
    write_json(tmp_path / "a.patch.json", {}, "patch-sidecar")
    check_outputs({tmp_path / "new.json": "patch-eval"}, "patchlab patch eval")  # a free path
    with pytest.raises(OutputExists) as same:
        check_output(tmp_path / "a.patch.json", "patch-sidecar", "patchlab patch train")
    assert same.value.same and "force=True" in str(same.value) and "--force" in same.value.cli_message()
    check_output(tmp_path / "a.patch.json", "patch-sidecar", "patchlab patch train", force=True)
    for kind, writer in (("sheet-manifest", "patchlab print"), ("patch-sidecar", "patchlab app")):
        with pytest.raises(OutputExists) as other:  # another kind, or the same kind by another command
            check_output(tmp_path / "a.patch.json", kind, writer, force=True)
        assert not other.value.same and "written by `patchlab patch train`" in str(other.value)
    (tmp_path / "mine.png").write_bytes(b"the user's own file")
    with pytest.raises(OutputExists, match="cannot tell what wrote it"):
        check_output(tmp_path / "mine.png", "eot-preview", force=True)
    (tmp_path / "v.avi").write_bytes(b"RIFF....AVI ")
    with pytest.raises(OutputExists, match="force=True replaces it") as video:
        check_output(tmp_path / "v.avi", "video")
    assert "--force replaces it" in video.value.cli_message()
    check_output(tmp_path / "v.avi", "video", force=True)  # videos have no room for a tag: force decides
    with pytest.raises(PatchlabError, match="same file"):
        check_outputs({tmp_path / "x.png": "patch", tmp_path / "sub" / ".." / "x.png": "print-png"})
    with pytest.raises(OutputExists, match="is a folder"):
        check_output(tmp_path, "patch")
    one_line = [str(e) for e in (same.value, other.value)]
    assert all("\n" not in m for m in one_line)


def test_default_names_of_every_kind_differ():
    files = [k.suffix for k in KINDS.values() if k.suffix.startswith(".") and k.suffix != ".png"]
    assert len(files) == len(set(files))  # one suffix per file kind (PNG images are told apart by their tags)
    out = Path("banana.png")
    names = {default_path(out, k) for k in ("patch-sidecar", "patch-checkpoint", "patch-eval", "patch-eval-plot",
                                            "sheet-manifest", "print-png", "photo-truth", "perturbation-sidecar",
                                            "colour-model")}
    assert len(names) == 9 and out not in names and Path("banana.json") not in names
    assert tag("sheet-manifest", "patchlab sheet") == {"artifact": "sheet-manifest", "written_by": "patchlab sheet"}


def test_jsonl_journal_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    append_jsonl(path, [{"i": 0}, {"i": 1}])
    with path.open("a") as fh:
        fh.write('{"i": 2, "torn')  # a writer killed mid-line
    assert read_jsonl(path) == [{"i": 0}, {"i": 1}]
    assert repair_jsonl_tail(path) == len('{"i": 2, "torn') and repair_jsonl_tail(path) == 0
    append_jsonl(path, [{"i": 2}])
    assert read_jsonl(path) == [{"i": 0}, {"i": 1}, {"i": 2}]
    path.write_text('{"i": 0}\nnot json\n{"i": 2}\n')
    with pytest.raises(PatchlabError, match="rows.jsonl:2"):
        read_jsonl(path)


def test_run_folders_are_fresh_even_when_started_together(tmp_path):
    assert next_run_folder(tmp_path / "rec").name == "run-001"
    made: list[Path] = []
    threads = [threading.Thread(target=lambda: made.append(next_run_folder(tmp_path / "rec"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({p.name for p in made}) == 8 and [p.name for p in run_folders(tmp_path / "rec")][-1] == "run-009"
    (tmp_path / "rec" / "run-1000").mkdir()
    assert next_run_folder(tmp_path / "rec").name == "run-1001"


def test_download_names_differ_by_content():
    assert download_name("toaster patch", "patch", b"a") != download_name("toaster patch", "patch", b"b")
    assert download_name("toaster patch", "patch", b"a").startswith("toaster_patch-")
    assert download_name("x", "patch-sidecar", b"a") == content_stem("x", b"a") + ".patch.json"
    assert os.sep not in download_name("../../etc", "patch", b"a")
