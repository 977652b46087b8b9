"""MNIST from official IDX files (.gz or not), with scikit-learn's 8x8 digits as the offline fallback."""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from patchlab.errors import PatchlabError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class Digits:
    images: torch.Tensor  # (N, 1, H, W) float in [0, 1]
    labels: torch.Tensor  # (N,) int64
    source: str

    def __len__(self) -> int:
        return len(self.labels)


def read_idx(path: str | Path) -> np.ndarray:
    """Parse one IDX file (the official MNIST format), gzipped or not."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise PatchlabError(f"{path}: not an IDX file")
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(dims))
    body = raw[4 + 4 * ndim:]
    if len(body) < count * dtype.itemsize:
        raise PatchlabError(f"{path}: truncated IDX file")
    return np.frombuffer(body, dtype=dtype, count=count).reshape(dims)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).exists():
            return folder / name
    return None


def load_mnist(folder: str | Path, split: str = "test") -> Digits:
    """Load MNIST 'train' or 'test' from a folder of IDX files."""
    folder = Path(folder)
    prefix = {"train": "train", "test": "t10k"}[split]
    images = _find(folder, f"{prefix}-images-idx3-ubyte")
    labels = _find(folder, f"{prefix}-labels-idx1-ubyte")
    if images is None or labels is None:
        raise PatchlabError(f"{folder}: no MNIST {split} files ({prefix}-images-idx3-ubyte[.gz], {prefix}-labels-idx1-ubyte[.gz])")
    x = read_idx(images)
    y = read_idx(labels)
    if x.shape[0] != y.shape[0]:
        raise PatchlabError(f"{folder}: {x.shape[0]} images but {y.shape[0]} labels")
    xt = torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1)
    return Digits(xt, torch.from_numpy(y.astype(np.int64)), f"mnist-{split}")


def load_digits(folder: str | Path | None = None, split: str = "test") -> Digits:
    """MNIST from `folder` if given, else scikit-learn's bundled 8x8 digits (1797 images, scaled to [0, 1])."""
    if folder is not None:
        return load_mnist(folder, split)
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    return Digits(x, torch.from_numpy(d.target.astype(np.int64)), "sklearn-digits")


def split_digits(d: Digits, sizes: dict[str, int], seed: int = 0) -> dict[str, Digits]:
    """Disjoint random parts of `d`, e.g. {"train": 8000, "test": 2000}; one size may be -1 for "the rest".

    The permutation depends only on `seed` and len(d), so every module that splits the same set with the same
    seed and sizes gets the same parts."""
    n = len(d.labels)
    rest = [k for k, v in sizes.items() if int(v) == -1]
    if len(rest) > 1:
        raise PatchlabError("split_digits: at most one part may be -1 (the rest)")
    if any(int(v) < -1 or (int(v) == 0) for v in sizes.values()):
        raise PatchlabError(f"split_digits: sizes must be positive (or -1 for the rest), got {sizes}")
    fixed = sum(int(v) for v in sizes.values() if int(v) != -1)
    if fixed > n or (rest and fixed == n):
        raise PatchlabError(f"split_digits: parts of {fixed} images do not fit in {d.source}'s {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    parts, start = {}, 0
    for name, size in sizes.items():
        count = n - fixed if int(size) == -1 else int(size)
        idx = order[start:start + count]
        parts[name] = Digits(d.images[idx], d.labels[idx], f"{d.source}[{name}]")
        start += count
    return parts


def resize_digits(d: Digits, size: int) -> Digits:
    """The same digits at `size` x `size` (antialiased bilinear), e.g. scikit-learn's 8x8 to MNIST's 28x28."""
    import torch.nn.functional as F

    if d.images.shape[-1] == size and d.images.shape[-2] == size:
        return d
    x = F.interpolate(d.images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return Digits(x.clamp(0, 1), d.labels, f"{d.source}@{size}")
