"""The standard eval transform, as in the reference EfficientNet eval pipeline: resize the short side with bicubic
interpolation (PIL's kernel, a = -0.5, antialiased when shrinking) to size + CROP_PADDING, then centre-crop to size."""

from __future__ import annotations

import torch
import torch.nn.functional as F

CROP_PADDING = 32      # the official EfficientNet eval rule: 224 of 256, 240 of 272, 260 of 292
CROP_FRACTION = 0.875  # 224 / 256: the same crop for 224-px models (the live camera's centre square)


def resize_short_side(image: torch.Tensor, short: int) -> torch.Tensor:
    """Resize so that the short side is `short` px, bicubic with antialias (which uses PIL's a = -0.5 kernel;
    without antialias torch uses a = -0.75), clamped to [0, 1] against the kernel's overshoot."""
    batched = image.dim() == 4
    x = image if batched else image.unsqueeze(0)
    h, w = x.shape[-2:]
    if min(h, w) != short:
        scale = short / min(h, w)
        size = (max(short, round(h * scale)), max(short, round(w * scale)))
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).clamp_(0, 1)
    return x if batched else x[0]


def center_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return image[..., top:top + size, left:left + size]


def resize_size(size: int) -> int:
    """The short side the image is resized to before the centre crop of `size`."""
    return int(size) + CROP_PADDING


def preprocess(image: torch.Tensor, model_or_size) -> torch.Tensor:
    """(3, H, W) or (N, 3, H, W) in [0, 1] -> the model's native input (centre crop of input_size)."""
    size = model_or_size if isinstance(model_or_size, int) else int(model_or_size.input_size)
    x = resize_short_side(image, resize_size(size))
    return center_crop(x, size).contiguous()
