"""The EOT nodes with hand-written backwards (paste, texture shrink, JPEG) give the gradients of their forwards.

The forwards are the plain operations (their values are pinned bit for bit by the stored evaluations); the backwards
are checked here against finite differences in float64 (gradcheck: paste and shrink, whose forwards are smooth in
the patch) and against autograd through the very same forward (JPEG, whose rounding jumps at half-integers, where
finite differences break). `owned` pastes into the caller's scenes and changes nothing else.
"""

from __future__ import annotations

import pytest
import torch

from patchlab.eot import EOT
from patchlab.eot import jpeg as J
from patchlab.eot import transforms as T


def _setup(preset: str, seed: int, size: int = 32, side: int = 40):
    g = torch.Generator().manual_seed(seed)
    scenes = torch.rand(3, 3, size, size, generator=g, dtype=torch.float64)
    alpha = (torch.rand(1, side, side, generator=g, dtype=torch.float64) > 0.2).double()
    rgb = torch.rand(3, side, side, generator=g, dtype=torch.float64)
    eot = EOT(preset)
    params = eot.sample(3, size, 0.15, torch.Generator().manual_seed(seed))
    return eot, params, scenes, rgb, alpha


def _nodes(fn, seen=None) -> set[str]:
    """The names of the autograd nodes behind `fn`."""
    seen = set() if seen is None else seen
    if fn is not None and type(fn).__name__ not in seen | {"AccumulateGrad"}:
        seen.add(type(fn).__name__)
        for nxt, _ in fn.next_functions:
            _nodes(nxt, seen)
    return seen


@pytest.mark.parametrize("preset", ["digital", "print"])  # one texture for the batch; one per sample (colour jitter)
def test_paste_and_shrink_gradients_pass_gradcheck(preset):
    eot, params, scenes, rgb, alpha = _setup(preset, seed=1)

    def placed(rgb_in):  # the opacity stays fixed: it also sizes the quad (a detached, discrete choice)
        return eot.place(torch.cat([rgb_in, alpha]), scenes, params)[0]

    assert {"_ShrinkBackward", "_PasteBackward"} <= _nodes(placed(rgb.clone().requires_grad_(True)).grad_fn)
    assert torch.autograd.gradcheck(placed, (rgb.clone().requires_grad_(True),), eps=1e-6, atol=1e-6,
                                     fast_mode=True)


@pytest.mark.parametrize("textures", [1, 3])  # shared by the batch, or one per sample
@pytest.mark.parametrize("opacity", ["learned", "fixed"])  # a fixed opacity takes the 3-channel backward
def test_paste_node_gradient_passes_gradcheck_on_every_channel(textures, opacity):
    eot, params, scenes, rgb, alpha = _setup("print", seed=3)
    corners = eot.corners(params, 32)
    x0, y0, bh, bw, sample = T._boxes_and_warps(corners, corners, 32, 12, 12)
    grid = T._grid(sample, bh, bw, torch.float64, "cpu")
    boxes = list(zip(y0.tolist(), x0.tolist()))
    premult = torch.rand(textures, 4, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    rgb_p = premult[:, :3].clone().requires_grad_(True)
    a_p = premult[:, 3:].clone().requires_grad_(opacity == "learned")

    def paste(r, a):
        return T._Paste.apply(r, a, T._Scratch(scenes, False), grid, boxes)

    assert torch.autograd.gradcheck(paste, (rgb_p, a_p), eps=1e-6, atol=1e-6, fast_mode=True)


def test_an_opacity_given_apart_renders_and_differentiates_as_the_rgba_patch():
    """The trainer passes its fixed mask as `alpha`, which skips the opacity's gradient: frames, coverage and the
    colour gradient must equal the RGBA patch's to the bit (the refactor and resume tests compare patches bit for
    bit), for a shared texture (summed over the batch) and per-sample ones (colour jitter)."""
    scenes = torch.rand(8, 3, 224, 224, generator=torch.Generator().manual_seed(7))
    weights = torch.cos(torch.arange(scenes.numel(), dtype=torch.float32)).view_as(scenes)
    for preset, shape in [("digital", (224, 224)), ("digital", (100, 160)), ("print", (224, 224))]:
        rgb = torch.rand(3, *shape, generator=torch.Generator().manual_seed(8))
        mask = (torch.rand(1, *shape, generator=torch.Generator().manual_seed(9)) > 0.3).float()
        results = []
        for apart in (False, True):
            texture = rgb.clone().requires_grad_(True)
            patch = texture if apart else torch.cat([texture, mask])
            out = EOT(preset)(patch, scenes.clone(), 0.1, torch.Generator().manual_seed(10), owned=True,
                              alpha=mask if apart else None)
            (out.images * weights).sum().backward()
            results.append((out.images.detach(), out.alpha, texture.grad))
        assert all(torch.equal(x, y) for x, y in zip(*results)), preset
        assert results[0][2].abs().sum() > 0


def test_shrink_gradient_passes_gradcheck_and_the_forward_is_torchs():
    tex = torch.rand(1, 4, 23, 17, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: T._Shrink.apply(t, (9, 7)), (tex,), eps=1e-6, atol=1e-6)
    plain = torch.nn.functional.interpolate(tex, size=(9, 7), mode="bilinear", align_corners=False, antialias=True)
    assert torch.equal(T._Shrink.apply(tex, (9, 7)), plain)


@pytest.mark.parametrize("preset", ["digital", "print"])
def test_owned_scenes_paste_in_place_with_the_same_frames_and_gradients(preset):
    eot, params, scenes, rgb, alpha = _setup(preset, seed=2)
    results = []
    for owned in (False, True):
        own = scenes.clone()
        patch = torch.cat([rgb, alpha]).requires_grad_(True)
        out = eot(patch, own, 0.15, None, params=params, owned=owned)
        out.images.square().sum().backward()
        results.append((out.images.detach(), patch.grad, out.alpha, own))
    (f0, g0, a0, s0), (f1, g1, a1, s1) = results
    assert torch.equal(f0, f1) and torch.equal(g0, g1) and torch.equal(a0, a1)
    assert torch.equal(s0, scenes)  # not owned: the caller's scenes are untouched
    assert not torch.equal(s1, scenes)  # owned: the patch was pasted into them
    assert a0.shape == (3, 1, 32, 32) and 0 < float(a0.sum()) and float(a0.max()) <= 1 + 1e-9


@pytest.mark.parametrize("shape", [(3, 3, 64, 96), (2, 3, 37, 50)])  # the second is padded to 48 x 64
def test_jpeg_node_gradient_equals_autograd_through_the_same_forward(shape):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(5))
    quality = torch.tensor([60.0, 80.0, 95.0])[: shape[0]]
    w = torch.randn(shape, generator=torch.Generator().manual_seed(6))
    node, plain = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out = J.jpeg(node, quality)
    ref = J._codec(plain, J._check(plain, quality))[0]
    assert out.grad_fn is not None and type(out.grad_fn).__name__ == "_JPEGBackward"
    assert torch.equal(out, ref)
    (out * w).sum().backward()
    (ref * w).sum().backward()
    assert plain.grad.abs().mean() > 1e-2
    assert torch.allclose(node.grad, plain.grad, rtol=1e-4, atol=1e-6), (node.grad - plain.grad).abs().max()


def test_a_fixed_opacity_is_shrunk_once_per_size_and_again_after_an_in_place_change():
    mask = torch.ones(1, 64, 48)
    first = T._shrink_fixed(mask, (20, 15))
    assert T._shrink_fixed(mask, (20, 15)) is first  # the cached shrink, not a new one
    assert torch.equal(first, T._Shrink.apply(mask[None], (20, 15)))
    mask[:, :32] = 0  # a changed mask (its version moves) is shrunk anew
    again = T._shrink_fixed(mask, (20, 15))
    assert again is not first and torch.equal(again, T._Shrink.apply(mask[None], (20, 15)))
    assert float(again.mean()) < float(first.mean())
