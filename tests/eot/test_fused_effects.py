"""The fused photometric step and the Gaussian blur equal their step-by-step definitions (forward and gradient)."""

from __future__ import annotations

import math

import pytest
import torch

from patchlab.eot import EOT, EOTConfig, preset
from patchlab.eot.transforms import _YIQ


def _photometric_reference(x: torch.Tensor, p, c: EOTConfig) -> torch.Tensor:
    """gamma, contrast about the mean, brightness, saturation and hue in YIQ, one after another; then clamp."""
    v = lambda t: t[:, None, None, None]  # noqa: E731
    if c.gamma != (1.0, 1.0):
        x = x.clamp(1e-4, 1).pow(v(p.gamma))
    if c.contrast == (1.0, 1.0) and not c.brightness and c.saturation == (1.0, 1.0) and not c.hue:
        return x
    if c.contrast != (1.0, 1.0):
        mean = x.mean((1, 2, 3), keepdim=True)
        x = (x - mean) * v(p.contrast) + mean
    if c.brightness:
        x = x + v(p.brightness)
    if c.saturation != (1.0, 1.0) or c.hue:
        ang, s = p.hue * 2 * math.pi, p.saturation
        zero, one = torch.zeros_like(s), torch.ones_like(s)
        chroma = torch.stack([torch.stack([one, zero, zero], -1),
                              torch.stack([zero, s * torch.cos(ang), -s * torch.sin(ang)], -1),
                              torch.stack([zero, s * torch.sin(ang), s * torch.cos(ang)], -1)], -2)
        x = torch.einsum("bij,bjhw->bihw", torch.linalg.inv(_YIQ) @ chroma @ _YIQ, x)
    return x.clamp(0, 1)


CONFIGS = {
    "print": preset("print"),
    "webcam": preset("webcam"),
    "gamma only": EOTConfig(name="g", gamma=(0.6, 1.5)),
    "contrast only": EOTConfig(name="c", contrast=(0.5, 1.5)),
    "brightness and hue": EOTConfig(name="bh", brightness=0.3, hue=0.1),
    "saturation only": EOTConfig(name="s", saturation=(0.2, 1.8)),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fused_photometric_equals_the_step_by_step_definition(name):
    cfg = CONFIGS[name]
    eot = EOT(cfg)
    p = eot.sample(6, 32, 0.1, torch.Generator().manual_seed(5))
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    x[0, :, :4] = 0.0  # exercise the gamma clamp's lower bound
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ours, ref = eot.photometric(xa, p), _photometric_reference(xb, p, cfg)
    (ours * w).sum().backward()
    (ref * w).sum().backward()
    assert (ours - ref).abs().max() <= 2e-6
    assert (xa.grad - xb.grad).abs().max() <= 1e-5 * max(1.0, float(xb.grad.abs().max()))
    assert xb.grad.abs().sum() > 0


@pytest.mark.parametrize("size", [3, 7])
def test_gaussian_blur_equals_kornias_and_so_does_its_gradient(size):
    import kornia

    from patchlab.eot.filters import gaussian_blur

    x = torch.rand(4, 3, 20, 28, generator=torch.Generator().manual_seed(8))
    sigma = torch.tensor([0.05, 0.4, 1.0, 2.0])
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(9))
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ours = gaussian_blur(xa, sigma, size)
    ref = kornia.filters.gaussian_blur2d(xb, (size, size), torch.stack([sigma, sigma], -1))
    (ours * w).sum().backward()
    (ref * w).sum().backward()
    assert torch.equal(ours, ref)
    assert (xa.grad - xb.grad).abs().max() <= 1e-5
    assert torch.autograd.gradcheck(lambda v: gaussian_blur(v, sigma[:2].double(), size),
                                    (x[:2, :1, :9, :11].double().requires_grad_(True),))


def test_motion_blur_equals_kornias_and_so_does_its_gradient():
    import kornia

    from patchlab.eot.filters import motion_blur

    x = torch.rand(3, 3, 20, 28, generator=torch.Generator().manual_seed(10))
    angle, direction = torch.tensor([10.0, 95.0, 170.0]), torch.tensor([-1.0, 0.3, 0.9])
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(11))
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ours = motion_blur(xa, 5, angle, direction)
    ref = kornia.filters.motion_blur(xb, 5, angle, direction, mode="bilinear")
    (ours * w).sum().backward()
    (ref * w).sum().backward()
    assert torch.equal(ours, ref)
    assert (xa.grad - xb.grad).abs().max() <= 1e-5
    assert torch.autograd.gradcheck(lambda v: motion_blur(v, 5, angle[:2].double(), direction[:2].double()),
                                    (x[:2, :1, :9, :11].double().requires_grad_(True),))


def test_gamma_node_equals_clamp_then_pow_and_its_gradient():
    from patchlab.eot.ops import gamma

    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(12)) * 1.4 - 0.2
    x[0, 0, 0, :4] = torch.tensor([0.0, 1e-4, 1.0, 0.5])  # at the clamp's bounds torch's gradient is 0: so is ours
    g = torch.tensor([0.8, 1.0, 1.25, 0.6])[:, None, None, None]
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(13))
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a, b = gamma(xa, g), xb.clamp(1e-4, 1).pow(g)
    (a * w).sum().backward()
    (b * w).sum().backward()
    assert torch.allclose(a, b, rtol=2e-6, atol=0), (a - b).abs().max()
    assert torch.allclose(xa.grad, xb.grad, rtol=1e-5, atol=1e-7), (xa.grad - xb.grad).abs().max()
    assert torch.equal(xa.grad == 0, xb.grad == 0)


def test_noise_node_equals_add_then_clamp_and_its_gradient():
    from patchlab.eot.ops import add_noise

    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(14))
    x[0, 0, 0, :3] = torch.tensor([0.0, 1.0, 0.5])
    sigma = torch.tensor([0.0, 0.02, 0.04, 0.5])[:, None, None, None]
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(15))
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(16))
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a, b = add_noise(xa, sigma, noise), (xb + sigma * noise).clamp(0, 1)
    (a * w).sum().backward()
    (b * w).sum().backward()
    assert torch.equal(a, b)
    assert torch.equal(xa.grad == 0, xb.grad == 0) and torch.allclose(xa.grad, xb.grad)
    assert (b == 0).any() and (b == 1).any()  # both clamp bounds exercised
