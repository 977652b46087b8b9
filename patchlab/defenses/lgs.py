"""Local Gradient Smoothing (Naseer, Khan, Porikli, WACV 2019): an empirical patch defense.

Adversarial patches are dense in high-frequency content. LGS takes the first-order gradient magnitude of the grey
image, scales it to [0, 1] per image, keeps it only in windows whose mean exceeds a threshold, and suppresses the
image there: x' = x * (1 - clip(lambda * g, 0, 1)). The paper's settings (ImageNet at 299 px): 15 px windows
with 5 px overlap, threshold 0.1, lambda 2.3.

It is not differentiable in a useful way (the window selection is a step function), so adaptive attacks use BPDA
(`transforms.Defended(model, LocalGradientSmoothing(), mode="bpda")`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from patchlab.defenses.transforms import InputTransform
from patchlab.errors import PatchlabError


class LocalGradientSmoothing(InputTransform):
    name = "lgs"

    def __init__(self, window: int = 15, overlap: int = 5, threshold: float = 0.1, smoothing: float = 2.3):
        super().__init__()
        if not 0 <= int(overlap) < int(window):
            raise PatchlabError(f"LGS overlap must lie in [0, window), got {overlap} for window {window}")
        if not smoothing > 0 or not 0 <= threshold < 1:
            raise PatchlabError("LGS smoothing must be positive and threshold in [0, 1)")
        self.window, self.overlap = int(window), int(overlap)
        self.threshold, self.smoothing = float(threshold), float(smoothing)

    def describe(self) -> dict:
        return {"defense": self.name, "window": self.window, "overlap": self.overlap, "threshold": self.threshold,
                "smoothing": self.smoothing}

    def gradient_map(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W): the thresholded, scaled gradient magnitude that LGS subtracts."""
        grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]) if x.shape[1] == 3 else x.mean(1, True)
        dx = F.pad(grey[..., :, :-1] - grey[..., :, 1:], (0, 1))
        dy = F.pad(grey[..., :-1, :] - grey[..., 1:, :], (0, 0, 0, 1))
        g = torch.sqrt(dx * dx + dy * dy)
        lo = g.amin((2, 3), keepdim=True)
        hi = g.amax((2, 3), keepdim=True)
        g = (g - lo) / (hi - lo + 1e-7)
        # windows of `window` px every `window - overlap` px (the last one flush with the border): a pixel is kept
        # when any window containing it has a mean above the threshold
        h, w = g.shape[-2:]
        k, stride = self.window, self.window - self.overlap
        pad_h = (-(h - k) % stride) if h > k else k - h
        pad_w = (-(w - k) % stride) if w > k else k - w
        padded = F.pad(g, (0, pad_w, 0, pad_h))
        hot = (F.avg_pool2d(padded, k, stride) > self.threshold).float()
        cover = F.conv_transpose2d(hot, torch.ones(1, 1, k, k, device=x.device, dtype=x.dtype), stride=stride)
        keep = (cover[..., :h, :w] > 0).to(x.dtype)
        return (self.smoothing * g * keep).clamp(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            m = self.gradient_map(x)
        return x * (1 - m)


__all__ = ["LocalGradientSmoothing"]
