"""Cutout-style masking (DeVries and Taylor 2017), the augmentation PatchCleanser's models are fine-tuned with:
square holes of a fixed side centred at uniform random pixels (clipped at the border), filled with grey.
PatchCleanser's recipe for ImageNet is 2 holes of 128 px at 224."""

from __future__ import annotations

import torch


def cutout(images: torch.Tensor, holes: int = 2, size: int = 128, gen: torch.Generator | None = None,
           fill: float = 0.5) -> torch.Tensor:
    """A copy of (N, C, H, W) `images` with `holes` squares of side `size` per image set to `fill`; the draws
    come from `gen` (a CPU generator), so a seeded run repeats."""
    n, _, h, w = images.shape
    ys = torch.randint(0, h, (n, holes), generator=gen)
    xs = torch.randint(0, w, (n, holes), generator=gen)
    rows = torch.arange(h).view(1, 1, h, 1)
    cols = torch.arange(w).view(1, 1, 1, w)
    half = size // 2
    y0, x0 = (ys - half).clamp(min=0), (xs - half).clamp(min=0)
    y1, x1 = (ys + half).clamp(max=h), (xs + half).clamp(max=w)
    inside = ((rows >= y0[..., None, None]) & (rows < y1[..., None, None])
              & (cols >= x0[..., None, None]) & (cols < x1[..., None, None])).any(1, keepdim=True)
    return torch.where(inside.to(images.device), torch.full((), fill, dtype=images.dtype, device=images.device),
                       images)


def cutout_loss(holes: int = 2, size: int = 128, fill: float = 0.5):
    """A `patchlab.models.digits.fit` loss: cross-entropy on cutout-masked batches."""
    import torch.nn.functional as F

    def masked_cross_entropy(model, x, y, gen):
        return F.cross_entropy(model(cutout(x, holes, size, gen, fill)), y)

    return masked_cross_entropy


__all__ = ["cutout", "cutout_loss"]
