"""Built-in sample photos (bundled with scikit-image, so they work offline) with their ImageNet labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from patchlab.errors import PatchlabError

# name -> (scikit-image loader, ImageNet class index of the main object)
SAMPLES: dict[str, tuple[str, int]] = {
    "chelsea": ("chelsea", 282),      # tiger cat
    "coffee": ("coffee", 967),        # espresso
    "rocket": ("rocket", 812),        # space shuttle
    "astronaut": ("astronaut", 834),  # suit
}


@dataclass(frozen=True)
class Sample:
    name: str
    image: torch.Tensor  # (3, H, W) in [0, 1]
    label: int


def sample_names() -> list[str]:
    return list(SAMPLES)


def load_sample(name: str) -> Sample:
    """One built-in photo as a (3, H, W) tensor in [0, 1]."""
    if name not in SAMPLES:
        raise PatchlabError(f"unknown sample '{name}'; choose from {', '.join(SAMPLES)}")
    import skimage.data

    loader, label = SAMPLES[name]
    arr = getattr(skimage.data, loader)()
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=2)
    image = torch.from_numpy(np.ascontiguousarray(arr[..., :3])).permute(2, 0, 1).float() / 255.0
    return Sample(name, image.contiguous(), label)


def load_samples() -> list[Sample]:
    return [load_sample(n) for n in SAMPLES]
