"""One registry of defenses (names, aliases, where each is available, one-line errors) and issue 21's rules for the
defend commands' outputs: tagged, identified, checked before any work, replaced only with --force."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from patchlab.errors import PatchlabError

PATCH = Path(__file__).resolve().parents[2] / "printables" / "toaster_efficientnet_lite0.png"


def test_defenses_are_registered_with_their_uses():
    from patchlab.defenses.adaptive import INPUT_DEFENSES
    from patchlab.defenses.live import LIVE_DEFENSES
    from patchlab.defenses.patch_eval import PATCH_DEFENSES
    from patchlab.defenses.registry import DEFENSES, check_defenses, defense_names, make_transform

    assert LIVE_DEFENSES == ("none", "patchcleanser", "lgs", "jpeg", "median")  # the camera selector
    assert set(INPUT_DEFENSES) == {"none", "lgs", "jpeg", "median", "bitdepth", "resize_pad"}
    assert set(PATCH_DEFENSES) == set(DEFENSES) and defense_names() == tuple(DEFENSES)
    assert check_defenses(["JPEG", "resize-pad", "pc", "bit-depth"], "patch") == ["jpeg", "resize_pad",
                                                                                 "patchcleanser", "bitdepth"]
    assert DEFENSES.title("lgs") == "Local gradient smoothing"
    with pytest.raises(PatchlabError, match=r"^unknown defense 'jpg'; did you mean 'jpeg'\? \(choose from none, "
                                            r"patchcleanser, lgs, jpeg, median\)$"):
        check_defenses(["jpg"], "live")
    with pytest.raises(PatchlabError, match="^defense 'resize_pad' is not available live"):
        check_defenses(["resize_pad"], "live")
    with pytest.raises(PatchlabError, match="not an input transformation"):
        make_transform("patchcleanser")
    x = torch.rand(2, 3, 64, 64)
    for name in defense_names("transforms"):
        if name != "none":
            y = make_transform(name)(x)
            assert y.shape == x.shape and 0 <= float(y.min()) and float(y.max()) <= 1, name
    assert make_transform("jpeg", quality=30).quality == 30


def test_defense_model_is_tagged_and_the_cli_refuses_to_overwrite_it(tmp_path, capsys):
    from patchlab.artifacts import check_outputs, identify
    from patchlab.cli import main
    from patchlab.models.digits import load_digits_model, make_digits_model, save_digits_model

    out = tmp_path / "noise.safetensors"
    save_digits_model(make_digits_model("logreg", size=28, seed=0), out, "defense-model",
                      "patchlab defend train smoothing")
    found = identify(out)
    assert (found.kind, found.written_by) == ("defense-model", "patchlab defend train smoothing")
    assert load_digits_model(out).config["kind"] == "logreg"  # the tag leaves the model loadable
    before = out.read_bytes()
    # the command's own earlier model: only with --force (refused before any training starts)
    assert main(["defend", "train", "smoothing", "--out", str(out), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "earlier `patchlab defend train smoothing` run" in err and "--force" in err and err.count("\n") == 1
    # another command's model or a patch: never, --force or not
    for writer in ("patchlab defend train adversarial", None):
        with pytest.raises(PatchlabError, match="refusing|not overwritten"):
            check_outputs({out: "defense-model"}, writer)
    patch = tmp_path / "toaster.png"
    shutil.copy(PATCH, patch)
    shutil.copy(PATCH.with_name(PATCH.stem + ".patch.json"), tmp_path / "toaster.patch.json")
    assert main(["defend", "train", "adversarial", "--out", str(patch), "--force", "--epochs", "1"]) == 2
    assert "patch image" in capsys.readouterr().err
    assert main(["defend", "certify", "smoothing", "-m", str(out), "--plot", str(patch), "--force"]) == 2
    assert "refusing" in capsys.readouterr().err
    assert out.read_bytes() == before and patch.read_bytes() == PATCH.read_bytes()


def test_defense_plot_is_tagged(tmp_path):
    from matplotlib.figure import Figure

    from patchlab.artifacts import identify, save_figure

    path = save_figure(Figure(), tmp_path / "p.png", "defense-plot", "patchlab defend evaluate transforms")
    found = identify(path)
    assert (found.kind, found.written_by) == ("defense-plot", "patchlab defend evaluate transforms")
