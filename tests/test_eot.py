"""EOT: gradients through every stage, placement corners, presets, colour model, determinism, preview."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from patchlab.eot import EOT, ColourModel, EOTConfig, PRESETS, load_config, preset, preview_grid
from patchlab.errors import PatchlabError

BARE = EOTConfig(name="bare", translate=True)

STAGES = {
    "placement": dict(area_scale=(0.8, 1.2), rotation=30.0, tilt=35.0),
    "printer_colour": dict(colour_gain=(0.7, 0.9), colour_offset=(0.02, 0.1)),
    "brightness": dict(brightness=0.2),
    "contrast": dict(contrast=(0.7, 1.3)),
    "saturation": dict(saturation=(0.6, 1.4)),
    "hue": dict(hue=0.05),
    "gamma": dict(gamma=(0.7, 1.4)),
    "gaussian_blur": dict(blur_sigma=(0.5, 1.5)),
    "motion_blur": dict(motion_blur_p=1.0, motion_blur_kernel=5),
    "noise": dict(noise=0.05),
    "jpeg": dict(jpeg_p=1.0, jpeg_quality=(50.0, 80.0)),
}


def _patch(size=24, grad=True):
    rgba = torch.rand(4, size, size, generator=torch.Generator().manual_seed(1))
    rgba[3] = 1
    return rgba.requires_grad_(grad)


@pytest.mark.parametrize("stage", list(STAGES))
def test_gradient_reaches_patch_through_each_stage(stage):
    eot = EOT(BARE.replace(**STAGES[stage]))
    patch = _patch()
    scenes = torch.rand(3, 3, 64, 64)
    out = eot(patch, scenes, 0.2, torch.Generator().manual_seed(0))
    weights = torch.randn(out.images.shape, generator=torch.Generator().manual_seed(2))
    (out.images * weights).sum().backward()
    g = patch.grad[:3]
    assert torch.isfinite(g).all()
    assert g.abs().sum() > 1e-3, f"no gradient through {stage}"
    assert (g.abs().sum(0) > 0).float().mean() > 0.5  # most texels get gradient (anti-aliased placement)


def test_gradient_through_fitted_colour_model():
    digital = torch.rand(40, 3, generator=torch.Generator().manual_seed(0))
    model = ColourModel.fit(digital, (digital * 0.8 + 0.1) ** 1.2, kind="root_polynomial")
    patch = _patch()
    out = EOT(PRESETS["print"], colour=model)(patch, torch.rand(2, 3, 64, 64), 0.2, torch.Generator().manual_seed(0))
    out.images.sum().backward()
    assert torch.isfinite(patch.grad).all() and patch.grad[:3].abs().sum() > 0


def test_switching_effects_off_keeps_the_other_draws():
    """EOTParams.without: the named effects become neutral, every other draw stays as drawn."""
    from dataclasses import fields

    from patchlab.eot.transforms import EFFECTS

    eot = EOT("print")
    scenes = torch.rand(6, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    params = eot.sample(6, 64, 0.1, torch.Generator().manual_seed(3))
    no_jpeg = params.without("jpeg")
    changed = [f.name for f in fields(params) if not torch.equal(getattr(params, f.name), getattr(no_jpeg, f.name))]
    assert changed == ["jpeg_on"] and not no_jpeg.jpeg_on.any() and params.jpeg_on.any()
    # every effect but the in-plane placement off: outside the patch the frame is the scene, the patch is a square
    bare = params.without(*[e for e in EFFECTS if e != "rotation"])
    out = eot(_patch(grad=False), scenes, 0.1, None, params=bare)
    outside = (out.alpha == 0).expand_as(scenes)
    assert outside.float().mean() > 0.5
    assert (out.images - scenes)[outside].abs().max() < 1e-3
    sides = (out.corners - out.corners.roll(1, dims=1)).norm(dim=-1)
    assert torch.allclose(sides, sides[:, :1].expand_as(sides), atol=1e-3)
    full = eot(_patch(grad=False), scenes, 0.1, None, params=params)
    assert (full.images - scenes)[(full.alpha == 0).expand_as(scenes)].abs().max() > 0.05
    with pytest.raises(PatchlabError, match="unknown EOT effect 'fog'"):
        params.without("fog")


def test_placement_matches_returned_corners():
    import cv2

    cfg = BARE.replace(rotation=40.0, tilt=40.0, area_scale=(0.7, 1.3))
    size = 96
    white = torch.ones(4, 40, 40)
    out = EOT(cfg)(white, torch.zeros(6, 3, size, size), 0.2, torch.Generator().manual_seed(3))
    for b in range(6):
        quad = out.corners[b].numpy().astype(np.float32)
        img = out.images[b, 0].numpy()
        for y in range(size):
            for x in range(size):
                d = cv2.pointPolygonTest(quad, (float(x), float(y)), True)
                if d > 1.5:
                    assert img[y, x] > 0.99, (b, x, y, d)
                elif d < -1.5:
                    assert img[y, x] < 0.01, (b, x, y, d)
        # the covered area matches the quad's area (pixel-accurate placement)
        assert abs(float(out.alpha[b].sum()) - cv2.contourArea(quad)) < 0.02 * cv2.contourArea(quad) + 2


def test_corner_order_follows_patch_image():
    """The texel in the patch's top-left corner lands at corners[0], and so on round the patch."""
    import cv2

    size, tex = 128, 32
    patch = torch.zeros(4, tex, tex)
    patch[3] = 1
    marks = {0: (slice(0, 4), slice(0, 4)), 1: (slice(0, 4), slice(tex - 4, tex)),
             2: (slice(tex - 4, tex), slice(tex - 4, tex)), 3: (slice(tex - 4, tex), slice(0, 4))}
    cfg = BARE.replace(rotation=60.0, tilt=20.0)
    for corner, (ys, xs) in marks.items():
        p = patch.clone()
        p[0][ys, xs] = 1
        out = EOT(cfg)(p, torch.zeros(1, 3, size, size), 0.3, torch.Generator().manual_seed(5))
        red = out.images[0, 0]
        yy, xx = torch.nonzero(red > 0.3, as_tuple=True)
        w = red[yy, xx]
        centre = np.array([float((xx * w).sum() / w.sum()), float((yy * w).sum() / w.sum())])
        src = np.float32([[-0.5, -0.5], [tex - 0.5, -0.5], [tex - 0.5, tex - 0.5], [-0.5, tex - 0.5]])
        homography = cv2.getPerspectiveTransform(src, out.corners[0].numpy().astype(np.float32))
        mark = np.float32([[[xs.start + 1.5, ys.start + 1.5]]])
        expected = cv2.perspectiveTransform(mark, homography)[0, 0]
        assert np.linalg.norm(centre - expected) < 1.0, (corner, centre, expected)
        assert np.linalg.norm(expected - out.corners[0, corner].numpy()) < 8


def test_area_fraction_is_the_shape_area():
    from patchlab.patch.shapes import make_mask

    for shape in ("square", "circle"):
        rgba = torch.cat([torch.ones(3, 64, 64), make_mask(shape, 64)], 0)
        out = EOT(BARE)(rgba, torch.zeros(4, 3, 128, 128), 0.1, torch.Generator().manual_seed(0))
        frac = out.alpha.mean((1, 2, 3))
        assert torch.allclose(frac, torch.full_like(frac, 0.1), atol=0.006), (shape, frac)


def test_same_generator_seed_same_frames():
    patch, scenes = _patch(grad=False), torch.rand(4, 3, 64, 64)
    a = EOT("webcam")(patch, scenes, 0.1, torch.Generator().manual_seed(9)).images
    b = EOT("webcam")(patch, scenes, 0.1, torch.Generator().manual_seed(9)).images
    c = EOT("webcam")(patch, scenes, 0.1, torch.Generator().manual_seed(10)).images
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_round_trip(name, tmp_path):
    cfg = preset(name)
    assert EOTConfig.from_text(cfg.to_yaml()) == cfg
    assert EOTConfig.from_text(cfg.to_json()) == cfg
    assert EOTConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for suffix in (".yaml", ".json"):
        path = cfg.save(tmp_path / f"{name}{suffix}")
        assert load_config(str(path)) == cfg


def test_preset_ranges_are_documented_values():
    p = preset("print")
    assert p.rotation == 22.5 and p.contrast == (0.8, 1.2) and p.brightness >= 0.05 and p.noise <= 0.1
    assert preset("digital").brightness == 0 and preset("digital").noise == 0


def test_config_errors_are_one_line():
    with pytest.raises(PatchlabError, match="did you mean 'rotation'"):
        EOTConfig.from_dict({"rotaton": 5})
    with pytest.raises(PatchlabError, match="low <= high"):
        EOTConfig(contrast=(1.2, 0.8))
    with pytest.raises(PatchlabError, match="unknown EOT preset"):
        preset("prnt")


def test_colour_model_fit_recovers_known_transforms(tmp_path):
    g = torch.Generator().manual_seed(0)
    digital = torch.rand(60, 3, generator=g)
    matrix = torch.tensor([[0.8, 0.1, 0.0, 0.05], [0.05, 0.7, 0.1, 0.08], [0.0, 0.1, 0.75, 0.1]])
    observed = torch.cat([digital, torch.ones(60, 1)], 1) @ matrix.T
    affine = ColourModel.fit(digital, observed, kind="affine", palette=observed[:12])
    assert torch.allclose(affine.matrix, matrix, atol=1e-4) and affine.rmse < 1e-5
    per = ColourModel.fit(digital, digital * 0.8 + 0.07, kind="per_channel")
    assert torch.allclose(per.matrix[:, :3], 0.8 * torch.eye(3), atol=1e-4) and per.rmse < 1e-5
    curved = (digital ** 0.8) * 0.9
    rp = ColourModel.fit(digital, curved, kind="root_polynomial")
    assert rp.rmse < ColourModel.fit(digital, curved, kind="affine").rmse
    affine.to_json(tmp_path / "c.json")
    back = ColourModel.from_json(tmp_path / "c.json")
    x = torch.rand(2, 3, 8, 8)
    assert back.kind == "affine" and torch.allclose(back(x), affine(x)) and torch.equal(back.palette, affine.palette)


def test_colour_model_bad_input():
    with pytest.raises(PatchlabError):
        ColourModel.fit(torch.rand(5, 3), torch.rand(4, 3))
    with pytest.raises(PatchlabError, match="at least"):
        ColourModel.fit(torch.rand(3, 3), torch.rand(3, 3), kind="root_polynomial")
    with pytest.raises(PatchlabError, match="unknown colour model"):
        ColourModel("lut")


def test_preview_grid_shape():
    grid = preview_grid(_patch(grad=False), torch.rand(3, 3, 48, 48), "print", n=6, nrow=3)
    assert grid.shape == (3, 2 * 50 + 2, 3 * 50 + 2) and grid.min() >= 0 and grid.max() <= 1


def test_cli_eot_preview_and_show(tmp_path, capsys):
    from patchlab.cli import main

    out = tmp_path / "grid.png"
    assert main(["eot", "preview", "--n", "4", "--size", "64", "--out", str(out)]) == 0
    assert out.is_file()
    assert main(["eot", "show", "digital", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["rotation"] == 22.5
    assert main(["eot", "preview", "--preset", "nope", "--out", str(out)]) == 2
