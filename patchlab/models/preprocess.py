"""The standard eval transform: resize the short side to size/0.875, centre-crop to size."""

from __future__ import annotations

import torch
import torch.nn.functional as F

CROP_FRACTION = 0.875


def resize_short_side(image: torch.Tensor, short: int) -> torch.Tensor:
    batched = image.dim() == 4
    x = image if batched else image.unsqueeze(0)
    h, w = x.shape[-2:]
    if min(h, w) != short:
        scale = short / min(h, w)
        size = (max(short, round(h * scale)), max(short, round(w * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
    return x if batched else x[0]


def center_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return image[..., top:top + size, left:left + size]


def preprocess(image: torch.Tensor, model_or_size) -> torch.Tensor:
    """(3, H, W) or (N, 3, H, W) in [0, 1] -> the model's native input (centre crop of input_size)."""
    size = model_or_size if isinstance(model_or_size, int) else int(model_or_size.input_size)
    x = resize_short_side(image, int(size / CROP_FRACTION))
    return center_crop(x, size).contiguous()
