"""Elementwise EOT steps as single autograd nodes: fewer passes over the frames than autograd's own backward."""

from __future__ import annotations

import torch


class _Gamma(torch.autograd.Function):
    """clamp(x, 1e-4, 1) ** g, as exp(g log x) (about 3x faster than pow on CPU, within 1e-6 relative); its gradient
    g y / x strictly inside the clamp's range and 0 elsewhere, bounds included (as torch's clamp gives it here)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        y = x.clamp(1e-4, 1).log_().mul_(g).exp_()
        ctx.save_for_backward(x, y, g)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, y, g = ctx.saved_tensors
        # hardtanh_backward: the gradient where 1e-4 < x < 1, else 0, in one pass (not compare, compare, or, fill)
        return torch.ops.aten.hardtanh_backward((grad * y).mul_(g).div_(x), x, 1e-4, 1.0), None


def gamma(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """clamp(x, 1e-4, 1) ** g with g broadcasting against x (per-sample (B, 1, 1, 1))."""
    return _Gamma.apply(x, g)


class _NoiseClamped(torch.autograd.Function):
    """clamp(x + sigma * noise, 0, 1) in one node, bit-identical to it (noise and sigma are draws: no gradient); the gradient
    passes where the sum lies strictly inside (0, 1), which is where the output does (as torch's clamp)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        out = (sigma * noise).add_(x).clamp_(0, 1)  # the rounding of x + sigma * noise (no fused multiply-add)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (out,) = ctx.saved_tensors
        return torch.ops.aten.hardtanh_backward(grad, out, 0.0, 1.0), None, None  # passes where 0 < out < 1


def add_noise(x: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """clamp(x + sigma * noise, 0, 1), sigma broadcasting against x (per-sample (B, 1, 1, 1))."""
    return _NoiseClamped.apply(x, sigma, noise)
