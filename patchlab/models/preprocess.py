"""The standard eval transform, as in the reference EfficientNet eval pipeline (PIL bicubic resize of the short side
to size + CROP_PADDING, centre crop to size), reproduced in torch to within one 8-bit level on < 0.5% of the values."""

from __future__ import annotations

import torch
import torch.nn.functional as F

CROP_PADDING = 32      # the official EfficientNet eval rule: 224 of 256, 240 of 272, 260 of 292
CROP_FRACTION = 0.875  # 224 / 256: the same crop for 224-px models (the live camera's centre square)


def _to_8bit(x: torch.Tensor) -> torch.Tensor:
    return x.mul(255).round_().clamp_(0, 255).div_(255)


def resize_short_side(image: torch.Tensor, short: int) -> torch.Tensor:
    """Resize so that the short side is `short` px, as PIL's BICUBIC does it: antialiased bicubic with a = -0.5
    (torch's antialias=True kernel; without antialias torch uses a = -0.75), first along the width, then along the
    height, each pass rounded and clipped to 8 bits like PIL's uint8 passes; the long side truncated like
    torchvision's Resize. Not differentiable (8-bit rounding); images are 8-bit anyway."""
    batched = image.dim() == 4
    x = image if batched else image.unsqueeze(0)
    h, w = x.shape[-2:]
    if min(h, w) != short:
        long = int(short * max(h, w) / min(h, w))
        out_h, out_w = (short, long) if h <= w else (long, short)
        if out_w != w:
            x = _to_8bit(F.interpolate(x, size=(h, out_w), mode="bicubic", align_corners=False, antialias=True))
        if out_h != h:
            x = _to_8bit(F.interpolate(x, size=(out_h, out_w), mode="bicubic", align_corners=False, antialias=True))
    return x if batched else x[0]


def center_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """The centre `size` x `size` square. An odd margin puts its extra pixel after the crop (as the live camera's
    centre square does); torchvision rounds half to even and TF's EfficientNet up, a 1-px shift either way."""
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
