"""patchlab's samplers for Opacus (patchlab.privacy.fastclip): the same per-sample norms and gradients as Opacus's
own materialised path, in NCHW and channels-last layouts (convolutions), and for 2-D and 3-D inputs (Linear)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

pytest.importorskip("opacus")


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    # T = 64 / 16 / 16 output positions: the first conv is materialised, the strided one ghost ("mixed")
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 6, 4, stride=2, padding=1), nn.Tanh(),
                         nn.Conv2d(6, 5, 3, padding="same", bias=False), nn.Flatten(), nn.Linear(5 * 16, 3))


def _reference(x, y):
    """Opacus's hooks with its own conv grad sampler on NCHW input: per-parameter per-sample gradients."""
    from opacus.grad_sample import GradSampleModule
    from opacus.grad_sample.conv import compute_conv_grad_sample

    saved = GradSampleModule.GRAD_SAMPLERS[nn.Conv2d]
    GradSampleModule.GRAD_SAMPLERS[nn.Conv2d] = compute_conv_grad_sample
    try:
        net = _net()
        gsm = GradSampleModule(net, loss_reduction="sum")
        nn.functional.cross_entropy(gsm(x), y, reduction="sum").backward()
        return [p.grad_sample.clone() for p in net.parameters()]
    finally:
        GradSampleModule.GRAD_SAMPLERS[nn.Conv2d] = saved


def test_norm_sampler_and_channels_last_grad_sampler_match_opacus():
    from opacus.grad_sample import GradSampleModule

    from patchlab.privacy import fastclip

    fastclip.register()
    x, y = torch.rand(7, 1, 8, 8), torch.arange(7) % 3
    ref = _reference(x, y)
    for layout in (torch.contiguous_format, torch.channels_last):
        # per-sample gradients through the registered grad sampler (Opacus's own gave wrong ones for channels-last)
        net = _net().to(memory_format=layout)
        gsm = GradSampleModule(net, loss_reduction="sum")
        nn.functional.cross_entropy(gsm(x.contiguous(memory_format=layout)), y, reduction="sum").backward()
        for g, r in zip((p.grad_sample for p in net.parameters()), ref, strict=True):
            assert torch.allclose(g, r, atol=1e-6)
        # per-sample norms from the norm sampler, from each conv's saved input and output gradient
        net = _net().to(memory_format=layout)
        seen = {}

        def keep(m, i, o):
            o.retain_grad()
            seen[m] = (i[0].detach(), o)

        for m in net:
            if isinstance(m, nn.Conv2d):
                m.register_forward_hook(keep)
        nn.functional.cross_entropy(net(x.contiguous(memory_format=layout)), y, reduction="sum").backward()
        params = list(net.parameters())
        for m, (a, o) in seen.items():
            for p, norm in fastclip.conv2d_norm_sample(m, [a], o.grad).items():
                want = ref[next(i for i, q in enumerate(params) if q is p)].reshape(len(x), -1).norm(dim=1)
                assert torch.allclose(norm, want, rtol=1e-5, atol=1e-6)
    # the Linear norm sampler (||g_i|| ||a_i|| for 2-D inputs) against the per-example gradients' norms, 2-D and 3-D
    lin = nn.Linear(5, 3)
    for shape in ((7, 5), (7, 4, 5)):
        a, g = torch.randn(*shape), torch.randn(*shape[:-1], 3)
        per = {lin.weight: torch.einsum("n...i,n...j->nij", g, a), lin.bias: torch.einsum("n...i->ni", g)}
        for p, norm in fastclip.linear_norm_sample(lin, [a], g).items():
            assert torch.allclose(norm, per[p].reshape(7, -1).norm(dim=1), rtol=1e-5)
    # an empty (Poisson) batch gives empty norms
    conv = _net()[0]
    out = fastclip.conv2d_norm_sample(conv, [torch.zeros(0, 1, 8, 8)], torch.zeros(0, 4, 8, 8))
    assert all(v.shape == (0,) for v in out.values()) and len(out) == 2
