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


# docs/eot-patches.md: this test's run, the 90x60 coffee photo to "toaster" at eps 16/255 under `print`
# (20 steps of 4 views): 22 of 32 fresh EOT views, against 0 for the photo and for a random +-eps perturbation.
# Asserted: >= 17/32 (the Wilson 95% lower bound at n = 32) and <= 3/32 for both baselines.
SUCCESS, BASELINE = 0.6875, 0.0


def test_perturbation_within_eps_succeeds_and_beats_random_noise(small_photo, lite0):
    from patchlab.physical.perturb import evaluate_perturbation
    from patchlab.stats import wilson_interval

    img = read_image(small_photo)
    eps, n = 16 / 255, 32
    res = printable_perturbation(img, lite0, eps, target=859, eot="print", steps=20, batch=4, eval_draws=n)
    assert res.adversarial.shape == img.shape
    assert float((res.adversarial - img).abs().max()) <= eps + 1e-6
    assert torch.allclose(res.adversarial * 255, (res.adversarial * 255).round(), atol=1e-3)  # on the 8-bit grid
    # a random perturbation of the same size, scored on the same fresh views, is no attack
    g = torch.Generator().manual_seed(5)
    noise = ((img + eps * (torch.randint(0, 2, img.shape, generator=g) * 2 - 1)) * 255).round().clamp(0, 255) / 255
    random = evaluate_perturbation(img, noise, lite0, 859, "print", draws=n, seed=res.meta["seed"] + 7919)
    print(f"\nperturb: {res.meta['success_rate']:.3f} of {n} views, photo {res.meta['original_success_rate']:.3f}, "
          f"random ±eps {random['success_rate']:.3f}")
    assert res.meta["n"] == n and res.meta["success_rate"] >= wilson_interval(SUCCESS * n, n)[0], res.meta
    ceiling = wilson_interval(BASELINE * n, n)[1]
    assert res.meta["original_success_rate"] <= ceiling and random["success_rate"] <= ceiling, (res.meta, random)


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
