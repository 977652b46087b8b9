"""patchlab.eot.jpeg against kornia's jpeg_codec_differentiable: same output and gradients, several times faster.

Tolerance (stated in patchlab/eot/jpeg.py): the two compute the same maths in a different float32 order, so they
differ by ~1e-6 except where a DCT coefficient sits within ~1e-5 of a rounding boundary (z = k + 0.5, where the
polynomial rounding jumps by 0.75 of a quantisation step) and the two round it to different sides: that changes
one 8x8 block (16x16 for chroma). We require: >= 99.7% of values within 1e-4 (of the [0, 1] range), mean absolute
difference <= 1e-5, the coefficients on different sides of a boundary all within 1e-4 of it, and gradients (which are
continuous at the boundary) within 1e-3 everywhere and 1e-5 on average. Checked at qualities 30-95 (the presets draw
40-95). Near 100 the quantisation steps fall to ~0.1, the quotients reach ~10^4, and float32 resolves their distance
to the nearest integer only to ~1e-3 in EITHER codec: there the gradients of the two agree to ~4e-3, not 1e-3.
"""

from __future__ import annotations

import time

import pytest
import torch

from patchlab.eot.jpeg import jpeg
from patchlab.errors import PatchlabError

QUALITIES = torch.tensor([60.0, 75.0, 90.0, 95.0])  # the print preset draws from [60, 95]; webcam from [40, 90]


def _kornia(x, q):
    import kornia

    return kornia.enhance.jpeg_codec_differentiable(x, q)


def _real(imagenet_dir, n=4, size=224):
    from patchlab.models.classify import load_batch

    return load_batch(sorted(imagenet_dir.iterdir())[::97][:n], size)


def _agree(x: torch.Tensor, q: torch.Tensor) -> None:
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ref, ours = _kornia(xa, q), jpeg(xb, q)
    (ref * w).sum().backward()
    (ours * w).sum().backward()
    diff = (ref - ours).abs()
    assert ours.shape == x.shape and ours.min() >= 0 and ours.max() <= 1
    assert (diff <= 1e-4).float().mean() >= 0.997, (diff > 1e-4).float().mean()
    assert diff.mean() <= 1e-5, diff.mean()
    gdiff = (xa.grad - xb.grad).abs()
    assert gdiff.max() <= 1e-3 and gdiff.mean() <= 1e-5, (gdiff.max(), gdiff.mean())
    assert xb.grad.abs().mean() > 1e-2  # a real gradient, not zeros on both sides


def test_matches_kornia_on_random_images():
    _agree(torch.rand(4, 3, 64, 96, generator=torch.Generator().manual_seed(0)), QUALITIES)


def test_matches_kornia_on_real_images(imagenet_dir):
    _agree(_real(imagenet_dir), QUALITIES)
    _agree(_real(imagenet_dir), torch.tensor([40.0, 50.0, 30.0, 85.0]))  # both branches of libjpeg's scale


def test_matches_kornia_with_padding_and_a_shared_quality():
    x = torch.rand(2, 3, 37, 50, generator=torch.Generator().manual_seed(1))  # padded to 48 x 64, cropped back
    _agree(x, torch.tensor([80.0, 80.0]))
    assert torch.equal(jpeg(x, torch.tensor(80.0)), jpeg(x, torch.tensor([80.0, 80.0])))


def test_differences_are_only_coefficients_at_a_rounding_boundary():
    """The blocks that differ are those where a coefficient lies on a rounding boundary, where the codec jumps."""
    import kornia.enhance.jpeg as kj

    from patchlab.eot import jpeg as ours

    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    qy, qc = (t[None] for t in kj._default_quantization_tables(x.device, x.dtype))
    ref_y = kj._jpeg_encode(x, QUALITIES, qy, qc)[0].reshape(4, -1, 64)  # kornia's rounded luma coefficients
    dct, _, to_ycc, _ = ours._constants(x.dtype, x.device)
    luma = (torch.einsum("j,bjhw->bhw", to_ycc[0], x) - 128.0)[:, None]
    z = torch.bmm(ours._blocks(luma), dct[None] / ours.quantisation_tables(QUALITIES)[0][:, None, :])
    sides = z.round() != ref_y.round()
    assert (z[sides] - z[sides].floor() - 0.5).abs().max() <= 1e-4 if sides.any() else True
    assert int(sides.sum()) <= 1e-4 * z.numel()


def test_quality_tables_are_kornias():
    import kornia.enhance.jpeg as kj

    from patchlab.eot.jpeg import quantisation_tables

    q = torch.tensor([0.0, 1.0, 10.0, 49.5, 50.0, 77.7, 100.0])
    qy, qc = kj._default_quantization_tables("cpu", torch.float32)
    for base, ours in zip((qy, qc), quantisation_tables(q)):
        scaled = base[None] * kj._jpeg_quality_to_scale(q)[:, None, None]
        ref = kj._differentiable_polynomial_floor(kj._differentiable_clipping((scaled + 50.0) / 100.0, 1, 255))
        assert torch.equal(ours, ref.reshape(len(q), 64))


def test_bad_input_is_one_line():
    with pytest.raises(PatchlabError, match="quality"):
        jpeg(torch.rand(2, 3, 16, 16), torch.tensor([50.0, 120.0]))
    with pytest.raises(PatchlabError, match=r"\(B, 3, H, W\)"):
        jpeg(torch.rand(2, 1, 16, 16), torch.tensor([50.0]))


def test_at_least_three_times_faster_than_kornia():
    """Forward + backward CPU time at the EOT's shape (4 of a batch of 8 at 224 px), best of 5 each, interleaved."""
    x = torch.rand(4, 3, 224, 224, generator=torch.Generator().manual_seed(4))

    def step(f):
        leaf = x.clone().requires_grad_(True)
        f(leaf, QUALITIES).sum().backward()

    best = {}
    for _ in range(6):
        for name, f in (("kornia", _kornia), ("ours", jpeg)):
            start = time.process_time()
            step(f)
            best.setdefault(name, []).append(time.process_time() - start)
    kornia_s, ours_s = min(best["kornia"][1:]), min(best["ours"][1:])  # the first round warms up
    assert kornia_s / ours_s >= 3.0, (kornia_s, ours_s)
