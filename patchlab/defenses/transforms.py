"""Input-transformation defenses and the tools to attack them adaptively (Athalye, Carlini, Wagner 2018).

Each defense is an `nn.Module` mapping [0, 1] images to [0, 1] images: JPEG compression (real libjpeg through
torchvision, not differentiable), bit-depth reduction (zero gradient almost everywhere), a median filter
(a gradient only through the selected pixel), random resize-and-pad (Xie et al. 2018; random). Local gradient
smoothing (Naseer 2019) lives in `lgs.py` and follows the same protocol.

`Defended(model, transform)` is the classifier an attacker faces. Its `mode` says how gradients pass the transform:
  "plain" - autograd through the transform as it is (what a naive attack sees: obfuscated gradients);
  "bpda"  - Backward Pass Differentiable Approximation: forward the real transform, backward the identity;
and `eot` > 1 averages the class probabilities over that many random draws of a randomized transform
(Expectation over Transformation), returning log of the mean probability as logits, so an attack's cross-entropy
is the loss of the expected classifier. `patchlab.attacks` run on a `Defended` unchanged.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from patchlab.errors import PatchlabError


class InputTransform(nn.Module):
    """Base: `randomized` transforms draw from `generator` (or the global RNG when it is None)."""

    name = "identity"
    randomized = False

    def __init__(self):
        super().__init__()
        self.generator: torch.Generator | None = None

    def describe(self) -> dict:
        return {"defense": self.name}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class JPEG(InputTransform):
    """Real JPEG at `quality` (libjpeg through Pillow, 4:2:0 chroma subsampling; Das et al. 2017 and Guo et al.
    2018 use 75). Not differentiable."""

    name = "jpeg"

    def __init__(self, quality: int = 75):
        super().__init__()
        if not 1 <= int(quality) <= 100:
            raise PatchlabError(f"JPEG quality must lie in [1, 100], got {quality}")
        self.quality = int(quality)

    def describe(self) -> dict:
        return {"defense": self.name, "quality": self.quality}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import io

        import numpy as np
        from PIL import Image

        pixels = x.detach().mul(255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()
        out = []
        for img in pixels:
            buf = io.BytesIO()
            Image.fromarray(img.squeeze(-1) if img.shape[-1] == 1 else img).save(buf, format="JPEG",
                                                                                    quality=self.quality)
            buf.seek(0)
            out.append(np.asarray(Image.open(buf)).reshape(img.shape))
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x.device, x.dtype).div_(255)


class BitDepth(InputTransform):
    """Quantise each channel to `bits` bits (Xu et al. 2018, feature squeezing). Gradient zero almost everywhere."""

    name = "bitdepth"

    def __init__(self, bits: int = 3):
        super().__init__()
        if not 1 <= int(bits) <= 8:
            raise PatchlabError(f"bits must lie in [1, 8], got {bits}")
        self.bits = int(bits)

    def describe(self) -> dict:
        return {"defense": self.name, "bits": self.bits}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = 2 ** self.bits - 1
        return torch.round(x * levels) / levels


class Median(InputTransform):
    """k x k median filter per channel (Xu et al. 2018), reflect-padded."""

    name = "median"

    def __init__(self, size: int = 3):
        super().__init__()
        if int(size) < 2:
            raise PatchlabError(f"median window must be at least 2 pixels, got {size}")
        self.size = int(size)

    def describe(self) -> dict:
        return {"defense": self.name, "size": self.size}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.size
        pad = ((k - 1) // 2, k // 2, (k - 1) // 2, k // 2)
        padded = F.pad(x, pad, mode="reflect")
        windows = padded.unfold(2, k, 1).unfold(3, k, 1)  # (N, C, H, W, k, k)
        return windows.flatten(-2).median(-1).values


class ResizePad(InputTransform):
    """Random resize to r in [S, ratio * S) and random zero-padding to ratio * S (Xie et al. 2018), then back to
    S so that any zoo model takes it. Randomized: evaluate it with EOT."""

    name = "resize_pad"
    randomized = True

    def __init__(self, ratio: float = 1.1):
        super().__init__()
        if not ratio > 1:
            raise PatchlabError(f"resize-and-pad ratio must be above 1, got {ratio}")
        self.ratio = float(ratio)

    def describe(self) -> dict:
        return {"defense": self.name, "ratio": self.ratio}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, s, _ = x.shape
        big = int(round(s * self.ratio))
        out = []
        for i in range(n):
            r = int(torch.randint(s, big, (1,), generator=self.generator))
            top, left = (int(v) for v in torch.randint(0, big - r + 1, (2,), generator=self.generator))
            small = F.interpolate(x[i:i + 1], size=(r, r), mode="bilinear", align_corners=False)
            canvas = F.pad(small, (left, big - r - left, top, big - r - top))
            out.append(F.interpolate(canvas, size=(s, s), mode="bilinear", align_corners=False, antialias=True))
        return torch.cat(out).clamp(0, 1)


class _StraightThrough(torch.autograd.Function):
    """Forward: the transform. Backward: the identity (BPDA with g(x) ~ x)."""

    @staticmethod
    def forward(ctx, x, transform):
        with torch.no_grad():
            return transform(x)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def bpda(transform: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return _StraightThrough.apply(x, transform)


class Defended(nn.Module):
    """`model(transform(x))` as an attack target: see the module docstring for `mode` and `eot`."""

    def __init__(self, model: nn.Module, transform: nn.Module, mode: str = "bpda", eot: int = 1):
        super().__init__()
        if mode not in ("plain", "bpda"):
            raise PatchlabError(f"mode must be plain or bpda, got {mode!r}")
        if int(eot) < 1:
            raise PatchlabError(f"eot must be at least 1, got {eot}")
        self.model, self.transform, self.mode, self.eot = model, transform, mode, int(eot)
        self.input_size = getattr(model, "input_size", None)
        self.labels = getattr(model, "labels", None)
        self.name = f"{getattr(model, 'name', 'model')}+{getattr(transform, 'name', 'transform')}"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _once(self, x: torch.Tensor) -> torch.Tensor:
        y = bpda(self.transform, x) if self.mode == "bpda" else self.transform(x)
        return self.model(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.eot == 1:
            return self._once(x)
        probs = torch.stack([self._once(x).float().softmax(-1) for _ in range(self.eot)]).mean(0)
        return probs.clamp_min(1e-12).log()


__all__ = ["BitDepth", "Defended", "InputTransform", "JPEG", "Median", "ResizePad", "bpda"]
