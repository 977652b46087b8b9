"""A grid of sampled EOT transformations, for eyeballing a preset."""

from __future__ import annotations

import torch


def preview_grid(patch: torch.Tensor, scenes: torch.Tensor, config="print", area: float = 0.1, n: int = 16,
                 seed: int = 0, colour=None, nrow: int | None = None) -> torch.Tensor:
    """(3, H, W) image: `n` EOT draws of `patch` (RGBA or RGB) over `scenes` (N, 3, S, S), cycled."""
    import math

    from torchvision.utils import make_grid

    from patchlab.eot.transforms import EOT

    gen = torch.Generator().manual_seed(seed)
    reps = scenes[torch.arange(n) % len(scenes)]
    with torch.no_grad():
        frames = EOT(config, colour)(patch, reps, area, gen).images
    return make_grid(frames.cpu(), nrow=nrow or math.ceil(math.sqrt(n)), padding=2, pad_value=1.0)
