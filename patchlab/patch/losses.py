"""Printability terms: non-printability score (Sharif 2016, in Thys 2019's min form) and total variation.

Both run once per optimisation step on a fixed palette and mask, so `Printability` analyses those once (the palette's
grid, the mask's pixel and neighbour weights) and computes each term as one autograd node with a closed-form
backward: the step-by-step versions cost a few ms per step in small elementwise ops and their backward nodes."""

from __future__ import annotations

import torch


def default_palette() -> torch.Tensor:
    """A generic printable palette until a calibrated one is given: a 4x4x4 RGB grid inside [0.1, 0.9]
    (paper white is not 1 and ink black is not 0 once photographed)."""
    levels = torch.linspace(0.1, 0.9, 4)
    grid = torch.cartesian_prod(levels, levels, levels)
    return grid.float()


def _grid_levels(palette: torch.Tensor) -> list[torch.Tensor] | None:
    """The sorted per-channel levels when `palette` is exactly their Cartesian product, else None."""
    levels = [torch.unique(palette[:, c]) for c in range(3)]
    if len(levels[0]) * len(levels[1]) * len(levels[2]) != len(palette) or \
            len(torch.unique(palette, dim=0)) != len(palette):
        return None
    return levels


class _WeightedDistance(torch.autograd.Function):
    """sum_i w_i |p_i - c_i| for pixels p (3, N), their (constant) nearest colours c and weights w summing to 1."""

    @staticmethod
    def forward(ctx, pixels, nearest, weights):
        diff = pixels - nearest
        dist = (diff * diff).sum(0).clamp_(min=1e-12).sqrt_()  # the clamp keeps the gradient finite on a colour
        ctx.save_for_backward(diff, dist, weights)
        return (dist * weights).sum() if weights is not None else dist.mean()

    @staticmethod
    def backward(ctx, grad):
        diff, dist, weights = ctx.saved_tensors
        scale = weights / dist if weights is not None else dist.reciprocal().mul_(1.0 / dist.numel())
        return diff * (scale * grad), None, None


class _TotalVariation(torch.autograd.Function):
    """sum |horizontal differences| * wx + sum |vertical differences| * wy (weights already normalised)."""

    @staticmethod
    def forward(ctx, patch, wx, wy):
        dx = patch[:, :, 1:] - patch[:, :, :-1]
        dy = patch[:, 1:, :] - patch[:, :-1, :]
        ctx.save_for_backward(dx.sign(), dy.sign(), wx, wy)  # d|d|/dd = sign(d)
        return (dx.abs_() * wx).sum() + (dy.abs_() * wy).sum()

    @staticmethod
    def backward(ctx, grad):
        sx, sy, wx, wy = ctx.saved_tensors
        gx, gy = sx.mul_(wx * grad), sy.mul_(wy * grad)
        out = torch.zeros(gx.shape[0], gy.shape[1] + 1, gx.shape[2] + 1, dtype=gx.dtype, device=gx.device)
        out[:, :, 1:] += gx
        out[:, :, :-1] -= gx
        out[:, 1:, :] += gy
        out[:, :-1, :] -= gy
        return out, None, None


class Printability:
    """The non-printability score and total variation of patches under one palette and one opacity mask.

    palette (K, 3) (None: total variation only); alpha (1, H, W) weights pixels (None = all pixels alike)."""

    def __init__(self, palette: torch.Tensor | None, alpha: torch.Tensor | None = None):
        self.palette = None if palette is None else palette.detach().float()
        self.alpha = None if alpha is None else alpha.detach().float()
        levels = None if palette is None else _grid_levels(self.palette.cpu())
        self.levels = None if levels is None else [lv.to(self.palette.device) for lv in levels]
        self.even = None
        if levels is not None:
            steps = [lv[1:] - lv[:-1] for lv in levels]
            if all(len(lv) > 1 and torch.allclose(d, d[:1].expand_as(d)) for lv, d in zip(levels, steps)):
                dev = self.palette.device
                lo = torch.stack([lv[0] for lv in levels])[:, None].to(dev)
                step = torch.stack([(lv[-1] - lv[0]) / (len(lv) - 1) for lv in levels])[:, None].to(dev)
                top = torch.tensor([len(lv) - 1 for lv in levels], dtype=torch.float32, device=dev)[:, None]
                self.even = (lo, step, top)
        self._weights: dict = {}

    def nearest_colour(self, pixels: torch.Tensor) -> torch.Tensor:
        """(3, N) pixels -> (3, N) their nearest palette colours (no gradient: which colour is nearest is fixed)."""
        with torch.no_grad():
            if self.even is not None:  # evenly spaced levels (the default grid): round to the nearest step
                lo, step, top = (t.to(pixels) for t in self.even)
                return torch.minimum(((pixels - lo) / step).round_().clamp_(min=0), top) * step + lo
            if self.levels is not None:  # a full RGB grid: the nearest colour is the nearest level per channel
                return torch.stack([lv.to(pixels)[torch.bucketize(pixels[c], (lv[1:] + lv[:-1]).to(pixels) / 2)]
                                    for c, lv in enumerate(self.levels)])
            palette = self.palette.to(pixels)
            d2 = palette.square().sum(1)[None] - 2 * pixels.T @ palette.T  # |p - c|^2 - |p|^2, (N, K)
            return palette.T[:, d2.argmin(1)]

    def _weights_for(self, shape: tuple, like: torch.Tensor):
        """Per-pixel NPS weights and per-neighbour-pair TV weights, normalised (None where all pixels count alike)."""
        key = (shape, like.dtype, like.device)
        if key not in self._weights:
            c, h, w = shape
            if self.alpha is None or bool((self.alpha == 1).all()):
                pixel = None
                wx = torch.full((), 1.0 / (c * h * (w - 1)), dtype=like.dtype, device=like.device)
                wy = torch.full((), 1.0 / (c * (h - 1) * w), dtype=like.dtype, device=like.device)
            else:
                a = self.alpha.to(like)
                pixel = a.reshape(-1) / a.sum().clamp(min=1e-6)
                ax, ay = a[:, :, 1:] * a[:, :, :-1], a[:, 1:, :] * a[:, :-1, :]
                wx, wy = ax / (3 * ax.sum()).clamp(min=1e-6), ay / (3 * ay.sum()).clamp(min=1e-6)
            self._weights[key] = (pixel, wx / 2, wy / 2)  # TV is the mean of the two directions
        return self._weights[key]

    def nps(self, patch: torch.Tensor) -> torch.Tensor:
        """Mean over (opaque) pixels of the L2 distance to the nearest palette colour; patch (3, H, W) in [0, 1]."""
        pixels = patch.reshape(3, -1)
        pixel, _, _ = self._weights_for(tuple(patch.shape), patch)
        return _WeightedDistance.apply(pixels, self.nearest_colour(pixels.detach()), pixel)

    def tv(self, patch: torch.Tensor) -> torch.Tensor:
        """Mean absolute difference between neighbouring pixels (L1, both directions), over opaque pixels."""
        _, wx, wy = self._weights_for(tuple(patch.shape), patch)
        return _TotalVariation.apply(patch, wx, wy)


def non_printability(patch: torch.Tensor, palette: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over (opaque) pixels of the L2 distance to the nearest palette colour.

    patch (3, H, W) in [0, 1]; palette (K, 3); alpha (1, H, W) weights pixels (None = all)."""
    return Printability(palette.to(patch), alpha).nps(patch)


def total_variation(patch: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels (L1, both directions), over opaque pixels."""
    return Printability(None, alpha).tv(patch)
