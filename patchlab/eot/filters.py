"""Per-sample Gaussian and motion blur with kornia's kernels and borders, backward as depthwise convolutions too.

kornia.filters.gaussian_blur2d (reflect border, separable) runs a grouped convolution per axis and lets autograd
differentiate reflect padding and the convolutions, whose backward on CPU costs about three times the forward. The
adjoint of a correlation with reflect padding is the correlation of the zero-padded gradient with the flipped kernel
(the same kernel for a Gaussian) followed by folding the reflected border back: that is the backward here, one
depthwise convolution per forward one. The forwards are kornia's computations (same kernels, same order, same
convolutions), so their outputs are identical (motion blur: kornia.filters.motion_blur with its reflect border).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _pad(x: torch.Tensor, r: int, dim: int) -> tuple[int, int, int, int]:
    return (r, r, 0, 0) if dim == 3 else (0, 0, r, r)


def _fold_reflection(g: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """The adjoint of reflect padding by r along dim: the padded gradient's border added back onto the samples it
    copied (left: x[1..r] reversed; right: x[n-1-r..n-2] reversed)."""
    n = g.shape[dim] - 2 * r
    out = g.narrow(dim, r, n).clone()
    out.narrow(dim, 1, r).add_(g.narrow(dim, 0, r).flip(dim))
    out.narrow(dim, n - 1 - r, r).add_(g.narrow(dim, n + r, r).flip(dim))
    return out


def _conv(x: torch.Tensor, weight: torch.Tensor, dim: int, padding: str) -> torch.Tensor:
    """Correlate every (sample, channel) plane of x (B, C, H, W) with its own 1-D kernel along dim."""
    b, c, h, w = x.shape
    r = weight.shape[-1] // 2
    kernel = weight.repeat_interleave(c, 0)[:, None, None, :] if dim == 3 else \
        weight.repeat_interleave(c, 0)[:, None, :, None]
    src = x.reshape(1, b * c, h, w)
    if padding == "reflect":
        out = F.conv2d(F.pad(src, _pad(src, r, dim), mode="reflect"), kernel, groups=b * c)
    else:  # zeros, full: the adjoint of a valid correlation with a symmetric kernel
        out = F.conv2d(src, kernel, groups=b * c, padding=(0, 2 * r) if dim == 3 else (2 * r, 0))
    return out.reshape(b, c, *out.shape[-2:])


class _GaussianBlur(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(kernels)
        return _conv(_conv(x, kernels, 3, "reflect"), kernels, 2, "reflect")  # kornia's order: x first, then y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (kernels,) = ctx.saved_tensors
        r = kernels.shape[-1] // 2
        g = _fold_reflection(_conv(grad.contiguous(), kernels, 2, "zeros"), r, 2)
        return _fold_reflection(_conv(g, kernels, 3, "zeros"), r, 3), None


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, size: int) -> torch.Tensor:
    """Blur each image of x (B, C, H, W) with an isotropic Gaussian of its own sigma (B,), odd kernel `size`, reflect
    border: kornia.filters.gaussian_blur2d(x, (size, size), stack([sigma, sigma], -1)), with a faster backward.
    Gradients flow to x only."""
    from kornia.filters import get_gaussian_kernel1d

    kernels = get_gaussian_kernel1d(size, sigma.detach().to(x.device, x.dtype)[:, None])  # (B, size), kornia's
    return _GaussianBlur.apply(x, kernels)


class _Correlate2d(torch.autograd.Function):
    """Each (sample, channel) plane of x (B, C, H, W) correlated with its sample's 2-D kernel (B, kh, kw), odd sides,
    reflect border: kornia.filters.filter2d(x, kernels, "reflect")."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(kernels)
        b, c, h, w = x.shape
        ry, rx = kernels.shape[-2] // 2, kernels.shape[-1] // 2
        weight = kernels.repeat_interleave(c, 0)[:, None]
        src = F.pad(x.reshape(1, b * c, h, w), (rx, rx, ry, ry), mode="reflect")
        return F.conv2d(src, weight, groups=b * c).reshape(b, c, h, w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (kernels,) = ctx.saved_tensors
        b, c, h, w = grad.shape
        ry, rx = kernels.shape[-2] // 2, kernels.shape[-1] // 2
        weight = kernels.flip(-2, -1).repeat_interleave(c, 0)[:, None]
        g = F.conv2d(grad.reshape(1, b * c, h, w), weight, groups=b * c, padding=(2 * ry, 2 * rx))
        g = _fold_reflection(_fold_reflection(g.reshape(b, c, h + 2 * ry, w + 2 * rx), ry, 2), rx, 3)
        return g, None


def motion_blur(x: torch.Tensor, size: int, angle: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """kornia.filters.motion_blur(x, size, angle, direction, border_type="reflect", mode="bilinear") with a faster
    backward (gradients flow to x only)."""
    from kornia.filters import get_motion_kernel2d

    kernels = get_motion_kernel2d(size, angle.detach().to(x.device, x.dtype), direction.detach().to(x.device, x.dtype),
                                  "bilinear")
    return _Correlate2d.apply(x, kernels)
