"""Per-sample Gaussian and motion blur with kornia's kernels and borders, backward as depthwise correlations too.

kornia.filters.gaussian_blur2d (reflect border, separable) runs a grouped convolution per axis and lets autograd
differentiate reflect padding and the convolutions, whose backward on CPU costs about three times the forward. The
adjoint of a correlation with reflect padding is the correlation of the zero-padded gradient with the flipped kernel
(the same kernel for a Gaussian) followed by folding the reflected border back: that is the backward here, one
depthwise correlation per forward one. The forwards are kornia's computations (same kernels, the same sums in the
same order, as multiply-adds of shifted slices), so their outputs are identical (motion blur:
kornia.filters.motion_blur with its reflect border).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _fold_reflection(g: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """The adjoint of reflect padding by r along dim: the padded gradient's border added back onto the samples it
    copied (left: x[1..r] reversed; right: x[n-1-r..n-2] reversed)."""
    n = g.shape[dim] - 2 * r
    out = g.narrow(dim, r, n).clone()
    out.narrow(dim, 1, r).add_(g.narrow(dim, 0, r).flip(dim))
    out.narrow(dim, n - 1 - r, r).add_(g.narrow(dim, n + r, r).flip(dim))
    return out


def _correlate(src: torch.Tensor, kernels: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """out[b, c, y, x] = sum over taps (i, j) of kernels[b, i, j] * src[b, c, y + i, x + j], an (h, w) output: one
    multiply-add of a shifted slice per tap that some sample uses, in row-major tap order. These are a depthwise
    convolution's sums in its order (bit-identical; a zero tap adds nothing), 2-4x sooner on CPU than mkldnn's
    depthwise kernel with one group per (sample, channel) plane."""
    kw = kernels.shape[-1]
    taps = kernels.flatten(1)[:, :, None, None, None]  # (B, taps, 1, 1, 1): tap t for every plane of its sample
    out = None
    for t in kernels.ne(0).any(0).flatten().nonzero()[:, 0].tolist():
        i, j = divmod(t, kw)
        part = src[:, :, i:i + h, j:j + w]
        out = part * taps[:, t] if out is None else out.addcmul_(part, taps[:, t])
    return out if out is not None else src.new_zeros((*src.shape[:2], h, w))


def _conv(x: torch.Tensor, weight: torch.Tensor, dim: int, padding: str) -> torch.Tensor:
    """Correlate every (sample, channel) plane of x (B, C, H, W) with its sample's 1-D kernel (B, k) along dim."""
    r = weight.shape[-1] // 2
    kernels = weight[:, None, :] if dim == 3 else weight[:, :, None]
    pad = (r, r, 0, 0) if dim == 3 else (0, 0, r, r)
    if padding == "reflect":
        return _correlate(F.pad(x, pad, mode="reflect"), kernels, *x.shape[-2:])
    # zeros, full: the adjoint of a valid correlation with a symmetric kernel
    h, w = x.shape[-2:]
    return _correlate(F.pad(x, tuple(2 * p for p in pad)), kernels, h + 2 * pad[2], w + 2 * pad[0])


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
        ry, rx = kernels.shape[-2] // 2, kernels.shape[-1] // 2
        return _correlate(F.pad(x, (rx, rx, ry, ry), mode="reflect"), kernels, *x.shape[-2:])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (kernels,) = ctx.saved_tensors
        h, w = grad.shape[-2:]
        ry, rx = kernels.shape[-2] // 2, kernels.shape[-1] // 2
        g = _correlate(F.pad(grad, (2 * rx, 2 * rx, 2 * ry, 2 * ry)), kernels.flip(-2, -1), h + 2 * ry, w + 2 * rx)
        return _fold_reflection(_fold_reflection(g, ry, 2), rx, 3), None


def motion_blur(x: torch.Tensor, size: int, angle: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """kornia.filters.motion_blur(x, size, angle, direction, border_type="reflect", mode="bilinear") with a faster
    backward (gradients flow to x only)."""
    from kornia.filters import get_motion_kernel2d

    kernels = get_motion_kernel2d(size, angle.detach().to(x.device, x.dtype), direction.detach().to(x.device, x.dtype),
                                  "bilinear")
    return _Correlate2d.apply(x, kernels)
