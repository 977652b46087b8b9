"""Input-transformation defenses, BPDA and EOT: gradients flow where they should, randomness is always met with EOT."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from patchlab.defenses.adaptive import adaptive_target, evaluate_transforms
from patchlab.defenses.lgs import LocalGradientSmoothing
from patchlab.defenses.registry import make_transform
from patchlab.defenses.transforms import JPEG, BitDepth, Defended, Median, ResizePad
from patchlab.errors import PatchlabError


class TinyNet(nn.Module):
    """A small random conv net on 3 x 32 x 32 images: enough to carry gradients."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                                  nn.Linear(128, 10))
        self.input_size = 32
        self.labels = [str(i) for i in range(10)]
        self.name = "tiny"

    def forward(self, x):
        return self.body(x)


def _input_grad(model, x):
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).logsumexp(1).sum(), x)
    return grad


@pytest.fixture()
def images():
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_bpda_gradients_flow_where_plain_gradients_vanish(images):
    net = TinyNet()
    for transform in (JPEG(75), BitDepth(3)):
        plain = Defended(net, transform, mode="plain")
        if isinstance(transform, JPEG):
            with pytest.raises(RuntimeError):  # no gradient path through libjpeg at all
                _input_grad(plain, images)
        else:
            assert float(_input_grad(plain, images).abs().max()) == 0.0  # round(): zero gradient everywhere
        g = _input_grad(Defended(net, transform, mode="bpda"), images)
        # straight-through: the gradient of the model at the transformed point
        ref = _input_grad(net, transform(images).detach())
        assert float(g.abs().max()) > 0 and torch.allclose(g, ref, atol=1e-6)


def test_median_and_lgs_pass_some_gradient(images):
    net = TinyNet()
    for transform in (Median(3), LocalGradientSmoothing()):
        assert float(_input_grad(Defended(net, transform, mode="plain"), images).abs().max()) > 0


def test_randomized_defense_is_always_attacked_with_eot(images, imagenet_dir):
    net = TinyNet()
    with pytest.raises(PatchlabError, match="EOT"):
        adaptive_target(net, ResizePad(), eot=1)
    target = adaptive_target(net, ResizePad(), eot=4)
    assert target.eot == 4 and target.mode == "bpda"
    assert adaptive_target(net, JPEG(), eot=4).eot == 1  # deterministic defenses need no EOT
    with pytest.raises(PatchlabError, match="eot"):
        evaluate_transforms(net, imagenet_dir, defenses=("none", "resize_pad"), eot=1, limit=2)


def test_eot_averages_probabilities_over_draws(images):
    net = TinyNet()
    t = ResizePad(1.2)
    t.generator = torch.Generator().manual_seed(5)
    eot = Defended(net, t, mode="bpda", eot=3)(images)
    t.generator = torch.Generator().manual_seed(5)
    draws = torch.stack([net(t(images)).softmax(-1) for _ in range(3)])
    assert torch.allclose(eot.exp(), draws.mean(0), atol=1e-6)
    assert len({tuple(net(t(images))[0].tolist()) for _ in range(3)}) == 3  # it is random from draw to draw


def test_transforms_keep_images_in_range_and_do_their_job():
    g = torch.Generator().manual_seed(2)
    smooth = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(1, 3, 64, 64).contiguous()
    assert (JPEG(90)(smooth) - smooth).abs().mean() < 0.01
    assert BitDepth(1)(smooth).unique().tolist() == [0.0, 1.0]
    noisy = smooth.clone()
    salt = torch.rand(1, 1, 64, 64, generator=g) < 0.05
    noisy[salt.expand_as(noisy)] = 1.0
    assert (Median(3)(noisy) - smooth).abs().mean() < 0.3 * (noisy - smooth).abs().mean()
    # LGS darkens a high-frequency square and leaves the smooth rest alone
    scene = smooth.clone()
    checker = ((torch.arange(16)[:, None] + torch.arange(16)[None]) % 2).float()
    scene[:, :, 20:36, 20:36] = checker
    out = LocalGradientSmoothing(window=8, overlap=2)(scene)
    assert (out - scene)[:, :, 20:36, 20:36].abs().mean() > 0.2
    assert (out - scene)[:, :, 45:, :].abs().max() < 1e-6
    for name in ("jpeg", "bitdepth", "median", "resize_pad", "lgs"):
        y = make_transform(name)(scene)
        assert y.shape == scene.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    with pytest.raises(PatchlabError):
        make_transform("blur")


def test_random_mask_eot_passes_gradient_only_outside_the_mask():
    from patchlab.defenses.adaptive_patch import RandomMask, defended_target
    from patchlab.defenses.masks import mask_set

    ms = mask_set(32, 6, 2)
    t = RandomMask(ms)
    t.generator = torch.Generator().manual_seed(0)
    net = TinyNet()
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(3), requires_grad=True)
    out = t(x)
    masked = (out == 0.5).all(1)
    assert all(int(m.sum()) == ms.size ** 2 for m in masked)  # one mask per image
    (grad,) = torch.autograd.grad(net(out).sum(), x)
    assert float(grad.abs().sum(1)[masked].max()) == 0 and float(grad.abs().sum()) > 0
    with pytest.raises(PatchlabError):
        defended_target(net, "blur")
