"""Book-keeping clipping (patchlab.privacy.bk): one backward pass gives Opacus's clipped sum of per-example gradients,
for our CNNs in both memory layouts, for layers on Opacus's generic path, and for an empty batch; the output-gradient
pass runs no weight-gradient kernel; models it cannot handle are refused."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from patchlab.errors import PatchlabError
from patchlab.models.digits import make_digits_model

pytest.importorskip("opacus")
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook")  # Opacus's hooks on image inputs: expected

N = 12


def _opacus_clipped_sum(make, x, y, clip_norm):
    """Opacus's own per-example clipping: hooks (with fastclip's conv sampler, right for channels-last too) and
    DPOptimizer.pre_step without noise, on the summed loss. Returns (grads, per-example gradient norms)."""
    from opacus.grad_sample import GradSampleModule
    from opacus.optimizers import DPOptimizer

    from patchlab.privacy import fastclip

    fastclip.register()
    net = make()
    gsm = GradSampleModule(net, loss_reduction="sum")
    params = [p for p in net.parameters() if p.requires_grad]
    opt = DPOptimizer(torch.optim.SGD(params, lr=1.0), noise_multiplier=0.0, max_grad_norm=clip_norm,
                      expected_batch_size=len(x), loss_reduction="sum")
    nn.functional.cross_entropy(gsm(x), y, reduction="sum").backward()
    norms = torch.stack([p.grad_sample.reshape(len(x), -1).norm(dim=1) for p in params]).norm(dim=0)
    opt.pre_step()
    return [p.grad.clone() for p in params], norms


def _bk_clipped_sum(make, x, y, clip_norm, **kwargs):
    from patchlab.privacy import bk

    net = make()
    model = bk.BookKeeping(net, clip_norm, **kwargs)
    loss = bk.BKLoss(model, nn.CrossEntropyLoss())(model(x), y)
    loss.backward()
    return [p.grad for p in net.parameters() if p.requires_grad]


def _check(make, x, y, **kwargs):
    _, norms = _opacus_clipped_sum(make, x, y, 1.0)
    clip_norm = float(norms.median())  # about half the examples clipped, half not
    want, norms = _opacus_clipped_sum(make, x, y, clip_norm)
    assert 0 < int((norms > clip_norm).sum()) < len(x)
    got = _bk_clipped_sum(make, x, y, clip_norm, **kwargs)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and torch.allclose(g, w, rtol=1e-4, atol=1e-5), (g - w).abs().max()


@pytest.mark.parametrize("kind", ["dpcnn", "cnn"])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["nchw", "channels-last"])
def test_clipped_sum_equals_opacus_per_example_clipping(kind, layout):
    torch.manual_seed(0)
    x, y = torch.rand(N, 1, 28, 28).contiguous(memory_format=layout), torch.arange(N) % 10

    def make():
        return make_digits_model(kind, activation="tanh", seed=0).to(memory_format=layout)

    _check(make, x, y)
    if layout == torch.channels_last:  # convolutions by ghost norm + the weight-gradient kernel instead of kept grads
        _check(make, x, y, keep=0)


def test_generic_layers_frozen_layers_and_an_empty_batch():
    """GroupNorm (no norm sampler: Opacus's per-example gradients), a "same"-padded convolution (Opacus's conv
    sampler), a frozen layer (skipped), and a Poisson batch of size 0 (a zero gradient for the noise to go on)."""
    from patchlab.privacy import bk

    def make():
        torch.manual_seed(1)
        net = nn.Sequential(nn.Conv2d(1, 4, 3, padding="same"), nn.GroupNorm(2, 4), nn.Tanh(), nn.Conv2d(4, 4, 3),
                            nn.Tanh(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
        net[3].requires_grad_(False)
        return net

    x, y = torch.rand(N, 1, 8, 8), torch.arange(N) % 3
    _check(make, x, y)
    net = make()
    model = bk.BookKeeping(net, 1.0)
    bk.BKLoss(model, nn.CrossEntropyLoss())(model(x[:0]), y[:0]).backward()
    assert all(p.grad is not None and not p.grad.any() for p in net.parameters() if p.requires_grad)
    assert all(p.grad is None for p in net[3].parameters())
    assert model.to_standard_module() is net and not net[0]._forward_hooks


@pytest.mark.parametrize("short", [0, 1], ids=["both-kept", "second-by-ghost"])
def test_the_keep_budget_is_spent_within_one_backward_and_restarts_at_the_next(monkeypatch, short):
    """The first convolution's per-example weight gradients come out of `keep`; the second's are kept only if the
    rest still holds them; every backward starts again from the whole `keep` (repeats give the same gradients)."""
    from patchlab.privacy import bk, fastclip

    calls, real = [], fastclip.conv2d_norms

    def spy(layer, a, g, keep=0):
        norms, grads = real(layer, a, g, keep=keep)
        calls.append((keep, layer.weight in grads))
        return norms, grads

    monkeypatch.setattr(fastclip, "conv2d_norms", spy)
    net = make_digits_model("dpcnn", activation="tanh", seed=0)
    sizes = [N * m.weight.numel() for m in net.modules() if isinstance(m, nn.Conv2d)]
    keep = sum(sizes) - short
    model = bk.BookKeeping(net, 1.0, keep=keep)
    torch.manual_seed(0)
    x, y = torch.rand(N, 1, 28, 28), torch.arange(N) % 10
    grads = []
    for _ in range(2):
        bk.BKLoss(model, nn.CrossEntropyLoss())(model(x), y).backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    assert calls == [(keep, True), (keep - sizes[0], not short)] * 2
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_output_gradient_pass_runs_no_weight_gradient_kernel():
    """The pass that gives the layer outputs' gradients asks convolution_backward for input gradients only, and the
    first convolution's backward does not run at all."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from patchlab.privacy import bk

    masks = []

    class Spy(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.convolution_backward.default:
                masks.append(list(args[-1]))
            return func(*args, **(kwargs or {}))

    net = make_digits_model("cnn", activation="tanh", seed=0)
    model = bk.BookKeeping(net, 1.0)
    loss = nn.functional.cross_entropy(model(torch.rand(4, 1, 28, 28)), torch.arange(4), reduction="none")
    with Spy():
        torch.autograd.grad(loss.sum(), [r[2] for r in model._records])
    assert masks == [[True, False, False]]  # the second convolution's input gradient; nothing else


def test_refuses_what_it_cannot_clip_right():
    from patchlab.privacy import bk

    shared = nn.Linear(4, 4)
    model = bk.BookKeeping(nn.Sequential(shared, nn.Tanh(), shared), 1.0)
    with pytest.raises(PatchlabError, match="once per forward"):
        bk.BKLoss(model, nn.MSELoss())(model(torch.rand(3, 4)), torch.rand(3, 4)).backward()
    model = bk.BookKeeping(nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True), nn.Linear(4, 2)), 1.0)
    with pytest.raises(PatchlabError, match="in place"):
        bk.BKLoss(model, nn.CrossEntropyLoss())(model(torch.rand(3, 4)), torch.arange(3) % 2).backward()
