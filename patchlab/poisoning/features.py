"""Penultimate-layer features of a zoo model, augmented views of source photos, and an on-disk feature cache.

A training or test example of the poisoning tasks is a *view*: one source photo and an augmentation seed. Seed 0 is
the model's eval transform (resize, centre crop); seeds >= 1 are random resized crops with a flip and a mild
brightness/contrast change, drawn from a generator seeded by the file name and the seed, so a view is the same image
on every machine and in every order. Views are quantised to 8 bits: each one is a real image that could be saved.

Computing Lite0 features for about a thousand views is the slow part of every poisoning experiment, so features are
cached on disk per (model weights, file contents, augmentation version, seed) under `$PATCHLAB_CACHE` (default
`~/.cache/patchlab`), never inside the repository.
"""

from __future__ import annotations

import hashlib
import math
import os
import weakref
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from patchlab.artifacts import save_torch
from patchlab.errors import PatchlabError
from patchlab.progress import ProgressFn


AUGMENT_VERSION = "rrc-0.3-flip-bc0.15-v1"  # bump when the augmentation changes: cached features are keyed by it
CROP_SCALE = (0.3, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
JITTER = 0.15


def cache_root() -> Path:
    """`$PATCHLAB_CACHE` or `$XDG_CACHE_HOME/patchlab` (default ~/.cache/patchlab)."""
    xdg = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    return Path(os.environ.get("PATCHLAB_CACHE") or os.path.join(xdg, "patchlab"))


# --- the feature extractor ------------------------------------------------------------------------------------------
_EXTRACTORS: "weakref.WeakKeyDictionary[nn.Module, nn.Module]" = weakref.WeakKeyDictionary()


class _Headless(nn.Module):
    """A torchvision-style net whose last Linear layer is replaced by the identity (a private copy)."""

    def __init__(self, model: nn.Module):
        import copy

        super().__init__()
        self.normalize = model.normalize
        self.net = copy.deepcopy(model.net)
        last = [name for name, m in self.net.named_modules() if isinstance(m, nn.Linear)]
        if not last:
            raise PatchlabError(f"{getattr(model, 'name', 'model')}: has no final Linear layer to take features before")
        parent_name, _, attr = last[-1].rpartition(".")
        parent = self.net.get_submodule(parent_name) if parent_name else self.net
        setattr(parent, attr, nn.Identity())
        self.requires_grad_(False).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x)).flatten(1)


def penultimate(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, 3, S, S) in [0, 1] -> the input of the model's last linear layer, (N, D). Differentiable in `x`.

    timm nets (the EfficientNet-Lite family) stop before the classifier with `forward_head(pre_logits=True)`;
    other zoo models run a private copy whose last Linear is the identity. No hooks: a model shared between
    threads (the app) stays safe."""
    net = model.net
    if hasattr(net, "forward_features") and hasattr(net, "forward_head"):
        z = model.normalize(x.to(model.device))
        z = z.contiguous(memory_format=torch.channels_last)
        return net.forward_head(net.forward_features(z), pre_logits=True).flatten(1)
    extractor = _EXTRACTORS.get(model)
    if extractor is None:
        extractor = _EXTRACTORS[model] = _Headless(model).to(model.device)
    return extractor(x.to(model.device))


def final_layer(model: nn.Module) -> nn.Linear:
    """The model's last Linear layer (its ImageNet classifier)."""
    layers = [m for m in model.net.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise PatchlabError(f"{getattr(model, 'name', 'model')}: has no final Linear layer")
    return layers[-1]


# --- views -----------------------------------------------------------------------------------------------------------
def _view_generator(name: str, seed: int) -> torch.Generator:
    digest = hashlib.sha1(f"{name}:{seed}:{AUGMENT_VERSION}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def augmented_view(image: torch.Tensor, size: int, seed: int, name: str = "") -> torch.Tensor:
    """(3, H, W) in [0, 1] -> (3, size, size) uint8. Seed 0 is the eval transform; seeds >= 1 a random resized
    crop (scale 0.3-1, aspect 3/4-4/3), a horizontal flip with p = 1/2 and brightness/contrast x U(0.85, 1.15),
    drawn from a generator seeded by (`name`, `seed`)."""
    from patchlab.models import preprocess

    if seed == 0:
        out = preprocess(image, size)
    else:
        gen = _view_generator(name, seed)
        u = torch.rand(8, generator=gen, dtype=torch.float64).tolist()
        h, w = image.shape[-2:]
        area = h * w * (CROP_SCALE[0] + (CROP_SCALE[1] - CROP_SCALE[0]) * u[0])
        log_r = math.log(CROP_RATIO[0]) + (math.log(CROP_RATIO[1]) - math.log(CROP_RATIO[0])) * u[1]
        cw = min(w, max(8, round(math.sqrt(area * math.exp(log_r)))))
        ch = min(h, max(8, round(math.sqrt(area / math.exp(log_r)))))
        top, left = int(u[2] * (h - ch + 1)), int(u[3] * (w - cw + 1))
        crop = image[:, top:top + ch, left:left + cw].unsqueeze(0)
        out = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
        if u[4] < 0.5:
            out = out.flip(-1)
        out = out * (1 + JITTER * (2 * u[5] - 1))
        mean = out.mean()
        out = (out - mean) * (1 + JITTER * (2 * u[6] - 1)) + mean
    return out.clamp(0, 1).mul(255).round().to(torch.uint8)


def file_digest(path: str | Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:20]


def model_fingerprint(model: nn.Module) -> str:
    """Name, input size and a hash of the weights: cached features are only reused for the same network."""
    cached = getattr(model, "_patchlab_fingerprint", None)
    if cached:
        return cached
    digest = hashlib.sha1(f"{getattr(model, 'name', '')}:{getattr(model, 'input_size', '')}".encode())
    for name, t in model.state_dict().items():
        digest.update(name.encode())
        digest.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    fp = f"{getattr(model, 'name', 'model')}-{digest.hexdigest()[:12]}"
    try:
        object.__setattr__(model, "_patchlab_fingerprint", fp)
    except Exception:  # noqa: BLE001 - caching the fingerprint is an optimisation only
        pass
    return fp


class FeatureCache:
    """Features of views, one small file per (model, file contents, augmentation version, seed)."""

    def __init__(self, model: nn.Module, root: str | Path | None = None):
        self.model = model
        self.root = Path(root) if root is not None else cache_root() / "poison-features"
        self.folder = self.root / model_fingerprint(model) / AUGMENT_VERSION
        self._digests: dict[Path, str] = {}

    def _path(self, source: Path, seed: int) -> Path:
        if source not in self._digests:
            self._digests[source] = file_digest(source)
        return self.folder / f"{self._digests[source]}-{seed}.pt"

    def view_image(self, source: str | Path, seed: int) -> torch.Tensor:
        """The view as a float (3, S, S) image in [0, 1] (exactly representable in 8 bits)."""
        from patchlab.data import read_image

        return augmented_view(read_image(source), self.model.input_size, seed, Path(source).name).float() / 255

    def features(self, views: Sequence[tuple[Path, int]], batch_size: int = 16,
                 progress: ProgressFn | None = None) -> torch.Tensor:
        """(len(views), D) float32 features; computes and stores the missing ones."""
        from patchlab.data import read_image

        views = [(Path(p), int(s)) for p, s in views]
        out: list[torch.Tensor | None] = [None] * len(views)
        missing = []
        for i, (p, s) in enumerate(views):
            path = self._path(p, s)
            if path.is_file():
                try:
                    out[i] = torch.load(path, map_location="cpu", weights_only=True)
                    continue
                except Exception:  # noqa: BLE001 - a damaged cache file is recomputed
                    pass
            missing.append(i)
        done = len(views) - len(missing)
        if progress is not None:
            progress(done, len(views), {"phase": "features", "cached": done})
        images: dict[Path, torch.Tensor] = {}
        for start in range(0, len(missing), batch_size):
            chunk = missing[start:start + batch_size]
            batch = []
            for i in chunk:
                p, s = views[i]
                if p not in images:
                    images = {p: read_image(p)}  # views of one photo come together; keep one decoded photo
                batch.append(augmented_view(images[p], self.model.input_size, s, p.name))
            x = torch.stack(batch).float().div_(255)
            with torch.no_grad():
                feats = penultimate(self.model, x).float().cpu()
            for i, f in zip(chunk, feats):
                out[i] = f.clone()
                save_torch(out[i], self._path(*views[i]))
            done += len(chunk)
            if progress is not None:
                progress(done, len(views), {"phase": "features", "cached": len(views) - len(missing)})
        return torch.stack(out) if out else torch.empty(0, 0)
