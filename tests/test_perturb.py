"""`patchlab perturb`: the printable perturbation stays inside eps (also after 8-bit PNG round trip)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from patchlab.data import load_sample, read_image, save_image
from patchlab.errors import PatchlabError
from patchlab.physical.perturb import printable_perturbation


@pytest.fixture(scope="module")
def small_photo(tmp_path_factory):
    img = F.interpolate(load_sample("coffee").image[None], size=(60, 90), mode="bilinear", antialias=True)[0]
    path = tmp_path_factory.mktemp("photo") / "coffee.png"
    save_image(img, path)
    return path


def test_perturbation_within_eps_and_changes_the_photo(small_photo, lite0):
    img = read_image(small_photo)
    eps = 4 / 255
    res = printable_perturbation(img, lite0, eps, target=None, eot="print", steps=4, batch=2, eval_draws=4)
    assert res.adversarial.shape == img.shape
    assert float((res.adversarial - img).abs().max()) <= eps + 1e-6
    assert float((res.adversarial - img).abs().max()) > 0.5 * eps  # it did move
    assert torch.allclose(res.adversarial * 255, (res.adversarial * 255).round(), atol=1e-3)  # on the 8-bit grid
    assert 0 <= res.meta["success_rate"] <= 1 and res.meta["n"] == 4


def test_cli_perturb_png_within_eps(small_photo, tmp_path, capsys):
    from patchlab.cli import main

    out = tmp_path / "adv.png"
    assert main(["perturb", str(small_photo), "--eps", "8/255", "--target", "toaster", "--steps", "3", "--batch", "2",
                 "--eval-draws", "4", "--out", str(out), "--json", "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out)
    orig, adv = read_image(small_photo), read_image(out)
    assert adv.shape == orig.shape  # full resolution
    assert float((adv - orig).abs().max()) <= 8 / 255 + 1e-6
    assert summary["target_name"] == "toaster" and summary["linf"] <= 8 / 255 + 1e-6
    assert json.loads(out.with_suffix(".perturb.json").read_text())["eps"] == pytest.approx(8 / 255)


def test_perturb_errors(small_photo, lite0, tmp_path):
    from patchlab.cli import main

    with pytest.raises(PatchlabError):
        printable_perturbation(torch.rand(3, 8, 8), lite0, 0.0)
    assert main(["perturb", str(small_photo), "--eps", "2", "--out", str(tmp_path / "a.png")]) == 2
    assert main(["perturb", str(small_photo), "--out", str(tmp_path / "a.jpg")]) == 2
