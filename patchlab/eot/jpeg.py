"""A fast differentiable JPEG codec (encode + decode) with the maths of kornia's `jpeg_codec_differentiable`.

The same model as kornia 0.9 (Reich et al. 2024, Shin & Song 2017), computed in fewer, larger operations:

    RGB -> YCbCr (full range, x255, the DCT's level shift of 128 folded in): one batched 3x3 matmul with an offset
    -> 4:2:0 chroma: kornia's 3-tap Gaussian (sigma 0.5, reflect) then the 2x2 bilinear average, from slices
    -> 8x8 blocks as rows of 64 -> DCT and division by the quality-scaled table as ONE per-sample 64x64 matmul
    -> polynomial rounding r + (z - r)^3 (its gradient 3 (z - r)^2, as kornia's)
    -> multiplication by the table and inverse DCT as one per-sample 64x64 matmul -> blocks back to planes
    -> chroma x2 bilinear (F.interpolate, as kornia) -> RGB (one batched matmul with an offset), clamp to [0, 1]

With gradients, the whole codec is one autograd node (`_JPEG`) whose backward runs this chain transposed.

The quantisation tables are kornia's: the standard luma/chroma tables scaled by the polynomial floor of libjpeg's
quality scale, soft-clipped to [1, 255] and polynomially floored (not integers; bit-identical values here).

Agreement with kornia (tests/eot/test_jpeg.py, qualities 30-95): the same maths in another float32 order moves the
output by ~1e-6, except where a DCT coefficient lies within ~1e-5 of a rounding boundary (z = k + 0.5, where the
polynomial rounding jumps by 0.75 of a quantisation step) and the two codecs round it to different sides: that one
8x8 block (16x16 for chroma) then differs visibly (a few blocks per thousand on uniform noise, fewer on photos).
Required there: >= 99.7% of values within 1e-4 and a mean difference <= 1e-5; gradients, continuous at the
boundary, within 1e-3 everywhere and 1e-5 on average.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from patchlab.errors import PatchlabError

_QT_Y = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
         14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
         49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
_QT_C = [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
         47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32
# full-range YCbCr as kornia computes it: y = .299 r + .587 g + .114 b, cb = (b - y) .564 + .5, cr = (r - y) .713 + .5
_Y = (0.299, 0.587, 0.114)
_CB = tuple(0.564 * (float(i == 2) - w) for i, w in enumerate(_Y))
_CR = tuple(0.713 * (float(i == 0) - w) for i, w in enumerate(_Y))
# and back (kornia's inverse constants)
_TO_RGB = ((1.0, 0.0, 1.4025245442), (1.0, -0.3443401356, -0.7144034731), (1.0, 1.7730496454, 0.0))

_CACHE: dict[tuple, tuple[torch.Tensor, ...]] = {}


def _poly_floor(x: torch.Tensor) -> torch.Tensor:
    f = x.floor()
    return f + (x - 0.5 - f) ** 3


def _soft_clip(x: torch.Tensor, lo: float, hi: float, scale: float = 0.02) -> torch.Tensor:
    x = torch.where(x > hi, -scale * (torch.exp(-(x - hi).clamp(min=0)) - 1.0) + hi, x)
    return torch.where(x < lo, scale * (torch.exp((x - lo).clamp(max=0)) - 1.0) + lo, x)


def quantisation_tables(quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample luma and chroma tables (B, 64) for qualities (B,) in [0, 100], as kornia scales them."""
    q = torch.where(quality == 0, torch.ones_like(quality), quality)
    scale = _poly_floor(torch.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q))[:, None]
    base_y = torch.tensor(_QT_Y, dtype=quality.dtype, device=quality.device)
    base_c = torch.tensor(_QT_C, dtype=quality.dtype, device=quality.device)
    return tuple(_poly_floor(_soft_clip((base * scale + 50.0) / 100.0, 1, 255)) for base in (base_y, base_c))


def _constants(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    key = (dtype, str(device))
    if key not in _CACHE:
        i = torch.arange(8, dtype=torch.float64)
        alpha = torch.ones(8, dtype=torch.float64)
        alpha[0] = 1 / math.sqrt(2)
        a = 0.5 * alpha[None, :] * torch.cos((2 * i[:, None] + 1) * i[None, :] * math.pi / 16)  # A[x, u]
        dct = torch.kron(a, a)  # [(x, y), (u, v)]: row-major 8x8 block -> row-major coefficients
        g = torch.exp(torch.tensor([-2.0, 0.0], dtype=torch.float64))  # kornia: 3 taps (side, centre), sigma 0.5
        g = g / (2 * g[0] + g[1])
        down = torch.stack([g[0] / 2, (g[0] + g[1]) / 2])  # the Gaussian, then the 2-tap bilinear average
        to_ycc = torch.tensor([_Y, _CB, _CR], dtype=torch.float64) * 255.0
        to_rgb = torch.tensor(_TO_RGB, dtype=torch.float64) / 255.0
        _CACHE[key] = tuple(t.to(dtype=dtype, device=device) for t in (dct, down, to_ycc, to_rgb))
    return _CACHE[key]


class _PolyRound(torch.autograd.Function):
    """r + (z - r)^3 with r = round(z); its gradient 3 (z - r)^2 (kornia's differentiable rounding), in one node."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        r = z.round()
        d = z - r
        ctx.save_for_backward(d)
        return torch.addcmul(r, d * d, d)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (d,) = ctx.saved_tensors
        return grad * d * d * 3.0


def _halve(x: torch.Tensor, dim: int) -> torch.Tensor:
    """(`dim` >= 0) Kornia's 4:2:0 step along `dim` (even length): 3-tap Gaussian (reflect) then the mean of each pair, i.e.
    out[i] = a x[2i-1] + b (x[2i] + x[2i+1]) + a x[2i+2], from slices (a strided 1-channel conv's backward is slow)."""
    a, b = _constants(x.dtype, x.device)[1].unbind()
    even, odd = x.unflatten(dim, (-1, 2)).unbind(dim + 1)
    n = even.shape[dim]
    before = torch.cat([odd.narrow(dim, 0, 1), odd.narrow(dim, 0, n - 1)], dim)       # x[2i-1], x[-1] = x[1]
    after = torch.cat([even.narrow(dim, 1, n - 1), even.narrow(dim, n - 1, 1)], dim)  # x[2i+2], x[n] = x[n-2]
    return (even + odd) * b + (before + after) * a


def _blocks(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C * H/8 * W/8, 64), each row one 8x8 block in row-major order."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 8, 8, w // 8, 8).permute(0, 1, 2, 4, 3, 5).reshape(b, -1, 64)


def _planes(x: torch.Tensor, c: int, h: int, w: int) -> torch.Tensor:
    b = x.shape[0]
    return x.reshape(b, c, h // 8, w // 8, 8, 8).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h, w)


def _halve_adjoint(g: torch.Tensor, dim: int) -> torch.Tensor:
    """The transpose of `_halve` along `dim` (>= 0): the gradient of out[i] = a x[2i-1] + b (x[2i] + x[2i+1]) +
    a x[2i+2] (reflected at the ends) sent back to the 2n inputs, from slices."""
    a, b = _constants(g.dtype, g.device)[1].unbind()
    n = g.shape[dim]
    even, odd = g * b, g * b
    even.narrow(dim, 1, n - 1).add_(g.narrow(dim, 0, n - 1) * a)  # x[2i] is after[i-1]
    even.narrow(dim, n - 1, 1).add_(g.narrow(dim, n - 1, 1) * a)  # and after[n-1] (the reflection)
    odd.narrow(dim, 0, n - 1).add_(g.narrow(dim, 1, n - 1) * a)   # x[2i+1] is before[i+1]
    odd.narrow(dim, 0, 1).add_(g.narrow(dim, 0, 1) * a)           # and before[0] (the reflection)
    return torch.stack([even, odd], dim + 1).flatten(dim, dim + 1)


def _upsample_adjoint(g: torch.Tensor) -> torch.Tensor:
    """The transpose of the x2 bilinear upsampling (align_corners=False) of the chroma planes."""
    b, c, h, w = g.shape
    return torch.ops.aten.upsample_bilinear2d_backward(g, [h, w], [b, c, h // 2, w // 2], False, 2.0, 2.0)


def _check(images: torch.Tensor, quality) -> torch.Tensor:
    if images.dim() != 4 or images.shape[1] != 3:
        raise PatchlabError(f"jpeg images must be (B, 3, H, W), got {tuple(images.shape)}")
    quality = torch.as_tensor(quality).detach().to(device=images.device, dtype=torch.float32).reshape(-1)
    if quality.numel() == 1:
        quality = quality.expand(len(images))
    if quality.numel() != len(images) or bool((quality < 0).any() | (quality > 100).any()):
        raise PatchlabError(f"jpeg quality must be one value or one per image, each in [0, 100], got {quality}")
    return quality


def _codec(images: torch.Tensor, quality: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """The codec's forward (differentiable through autograd when run with gradients: the reference for `_JPEG`'s
    backward), and what that backward needs: the rounding residuals, the matrices and the unclamped output."""
    x = images.float()
    b, _, h0, w0 = x.shape
    dct, down, to_ycc, to_rgb = _constants(x.dtype, x.device)
    pad_h, pad_w = -h0 % 16, -w0 % 16
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    h, w = x.shape[-2:]
    # colour: YCbCr x255 minus the DCT's level shift of 128 (chroma sits at 127.5 before the shift)
    offset = torch.tensor([-128.0, -0.5, -0.5], dtype=x.dtype, device=x.device)[None, :, None]
    ycc = torch.baddbmm(offset, to_ycc.expand(b, 3, 3), x.reshape(b, 3, h * w)).view(b, 3, h, w)
    luma = ycc[:, :1]
    chroma = _halve(_halve(ycc[:, 1:], 3), 2)  # (B, 2, h/2, w/2)
    table_y, table_c = quantisation_tables(quality)  # (B, 64) each
    coded, saved = [], {"planes": []}
    for plane, table in ((luma, table_y), (chroma, table_c)):
        # DCT and division by the table in one matmul; multiplication by it and inverse DCT in another
        forward, inverse = dct[None] / table[:, None, :], table[:, :, None] * dct.T[None]
        z = torch.bmm(_blocks(plane), forward)
        if torch.is_grad_enabled():
            rounded = _PolyRound.apply(z)
        else:  # _PolyRound's forward, keeping its residual for _JPEG's backward
            r = z.round()
            d = z - r
            rounded = torch.addcmul(r, d * d, d)
            saved["planes"].append((forward, inverse, d, plane.shape))
        rec = torch.bmm(rounded, inverse)
        coded.append(_planes(rec, plane.shape[1], *plane.shape[-2:]))
    chroma = F.interpolate(coded[1], scale_factor=2, mode="bilinear", align_corners=False)  # kornia's
    # back to RGB in one batched matmul, the level shift (128, chroma 127.5) folded into its offset
    level = to_rgb @ torch.tensor([128.0, 0.5, 0.5], dtype=x.dtype, device=x.device)
    rgb = torch.baddbmm(level[None, :, None], to_rgb.expand(b, 3, 3), torch.cat([coded[0], chroma], 1).view(b, 3, -1))
    rgb = rgb.view(b, 3, h, w)[..., :h0, :w0]
    saved.update(rgb=rgb, size=(h, w))
    return F.hardtanh(rgb, 0.0, 1.0).to(images.dtype), saved  # clamp(0, 1), one-pass backward


class _JPEG(torch.autograd.Function):
    """The codec as one autograd node. Everything but the rounding and the final clamp is linear, so the backward is
    the transposed chain (matrices transposed, 4:2:0 and its upsampling by their adjoints) with the rounding's
    derivative 3 (z - r)^2 in the middle: a few passes over the frames instead of the ~40 small nodes (slices that
    zero-fill whole frames in their backward, concatenations, permutation copies) autograd records for it."""

    @staticmethod
    def forward(ctx, images: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        out, saved = _codec(images, quality)
        ctx.saved = saved
        ctx.dtype = images.dtype
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        saved = ctx.saved
        del ctx.saved
        rgb, (h, w) = saved["rgb"], saved["size"]
        g = torch.ops.aten.hardtanh_backward(grad.float(), rgb, 0.0, 1.0)
        b, _, h0, w0 = g.shape
        if (h0, w0) != (h, w):
            g = F.pad(g, (0, w - w0, 0, h - h0))
        dct, _, to_ycc, to_rgb = _constants(g.dtype, g.device)
        g = torch.bmm(to_rgb.T.expand(b, 3, 3), g.reshape(b, 3, h * w)).view(b, 3, h, w)
        planes = []
        for (forward, inverse, d, shape), plane in zip(saved["planes"], (g[:, :1], _upsample_adjoint(g[:, 1:]))):
            gz = torch.bmm(_blocks(plane), inverse.transpose(1, 2)).mul_(d * d).mul_(3.0)
            planes.append(_planes(torch.bmm(gz, forward.transpose(1, 2)), shape[1], *shape[-2:]))
        chroma = _halve_adjoint(_halve_adjoint(planes[1], 2), 3)
        g = torch.bmm(to_ycc.T.expand(b, 3, 3), torch.cat([planes[0], chroma], 1).view(b, 3, -1)).view(b, 3, h, w)
        if (h0, w0) != (h, w):  # the replicated border's gradient goes back to the last row and column
            g = g.clone()
            g[..., h0 - 1, :] += g[..., h0:, :].sum(-2)
            g[..., :, w0 - 1] += g[..., :, w0:].sum(-1)
            g = g[..., :h0, :w0]
        return g.to(ctx.dtype), None


def jpeg(images: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Differentiable JPEG of RGB `images` (B, 3, H, W) in [0, 1] at per-image `quality` (B,) in [0, 100]; the
    output is (B, 3, H, W) in [0, 1]. Gradients flow to `images` (not to `quality`)."""
    quality = _check(images, quality)
    if not (torch.is_grad_enabled() and images.requires_grad):
        return _codec(images, quality)[0]
    return _JPEG.apply(images, quality)
