"""Printability terms: non-printability score (Sharif 2016, in Thys 2019's min form) and total variation."""

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


def non_printability(patch: torch.Tensor, palette: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over (opaque) pixels of the L2 distance to the nearest palette colour.

    patch (3, H, W) in [0, 1]; palette (K, 3); alpha (1, H, W) weights pixels (None = all)."""
    pixels = patch.reshape(3, -1)  # (3, HW)
    palette = palette.to(patch)
    with torch.no_grad():  # which colour is nearest needs no gradient; the distance to it does
        levels = _grid_levels(palette)
        steps = [lv[1:] - lv[:-1] for lv in levels] if levels is not None else None
        if levels is not None and all(len(lv) > 1 and torch.allclose(d, d[:1].expand_as(d)) for lv, d in
                                      zip(levels, steps)):
            # evenly spaced levels (the default grid): round to the nearest step (3x cheaper than bucketize + gather)
            lo = torch.stack([lv[0] for lv in levels])[:, None]
            step = torch.stack([(lv[-1] - lv[0]) / (len(lv) - 1) for lv in levels])[:, None]
            top = torch.tensor([len(lv) - 1 for lv in levels], dtype=pixels.dtype, device=pixels.device)[:, None]
            nearest_colour = torch.minimum(((pixels - lo) / step).round_().clamp_(min=0), top) * step + lo
        elif levels is not None:  # a full RGB grid: the nearest colour is the nearest level per channel
            nearest_colour = torch.stack([lv[torch.bucketize(pixels[c], (lv[1:] + lv[:-1]) / 2)]
                                          for c, lv in enumerate(levels)])
        else:
            d2 = palette.square().sum(1)[None] - 2 * pixels.T @ palette.T  # |p - c|^2 - |p|^2, (HW, K)
            nearest_colour = palette.T[:, d2.argmin(1)]
    diff = pixels - nearest_colour
    nearest = (diff * diff).sum(0).clamp(min=1e-12).sqrt()  # the clamp keeps the gradient finite on a palette colour
    if alpha is None:
        return nearest.mean()
    w = alpha.reshape(-1).to(patch)
    return (nearest * w).sum() / w.sum().clamp(min=1e-6)


def total_variation(patch: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels (L1, both directions), over opaque pixels."""
    dx = (patch[:, :, 1:] - patch[:, :, :-1]).abs()
    dy = (patch[:, 1:, :] - patch[:, :-1, :]).abs()
    if alpha is None:
        return (dx.mean() + dy.mean()) / 2
    ax = alpha[:, :, 1:] * alpha[:, :, :-1]
    ay = alpha[:, 1:, :] * alpha[:, :-1, :]
    return ((dx * ax).sum() / (3 * ax.sum()).clamp(min=1e-6) + (dy * ay).sum() / (3 * ay.sum()).clamp(min=1e-6)) / 2
