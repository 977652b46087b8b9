"""Pieces every transfer / theft experiment shares: rates with Wilson intervals, batched prediction, a wrapper
that puts models with different input sizes into one pixel space, torch views of scikit-learn models, and a
cache of trained digit models."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from patchlab.errors import PatchlabError
from patchlab.progress import ProgressFn
from patchlab.stats import wilson_interval


def rate(key: str, hits: int, n: int) -> dict:
    """{key: hits/n, key_ci95: [lo, hi]}: a rate as a fraction with its 95% Wilson interval."""
    lo, hi = wilson_interval(int(hits), int(n))
    return {key: (hits / n) if n else 0.0, f"{key}_ci95": [lo, hi]}


def scaled_progress(progress: ProgressFn | None, start: float, span: float, total: float) -> ProgressFn | None:
    """A callback for a sub-task that fills [start, start + span] of an outer task of size `total` (any units);
    it reports the outer progress in thousandths, so nested sub-tasks keep a smooth bar."""
    if progress is None:
        return None

    def inner(step: int, of: int, metrics: dict | None = None) -> None:
        frac = (start + span * min(step, of) / max(of, 1)) / total
        progress(int(round(1000 * frac)), 1000, metrics or {})

    return inner


# -- prediction ------------------------------------------------------------------------------------------------
def model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


@torch.no_grad()
def scores(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """The model's output scores (logits, or probabilities for scikit-learn models) on the CPU, in batches."""
    if isinstance(model, nn.Module):
        was = model.training
        model.eval()
    dev = model_device(model)
    chunks = range(0, len(x), batch_size) if len(x) else [0]  # an empty batch still gives (0, K)
    out = torch.cat([model(x[i:i + batch_size].to(dev)).detach().cpu() for i in chunks])
    if out.dtype in (torch.float16, torch.bfloat16):
        out = out.float()
    if isinstance(model, nn.Module):
        model.train(was)
    return out


def predict(model, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Top-1 class per image."""
    return scores(model, x, batch_size).argmax(1)


def probabilities(model, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Softmax probabilities (models that already output probabilities say so with `outputs = "probs"`)."""
    s = scores(model, x, batch_size)
    return s if getattr(model, "outputs", "logits") == "probs" else s.softmax(1)


def model_name(model, default: str = "model") -> str:
    return str(getattr(model, "name", default))


# -- one pixel space for models with different input sizes -----------------------------------------------------
class AtSize(nn.Module):
    """Takes images at `size` and resizes them (antialiased bilinear, differentiable) to the wrapped model's
    input size, so that the perturbations of models with different native sizes live in one pixel space and one
    ε means the same thing for all of them."""

    def __init__(self, model: nn.Module, size: int):
        super().__init__()
        self.model = model
        self.input_size = int(size)
        self.native = int(getattr(model, "input_size", size))
        self.labels = list(getattr(model, "labels", []) or [])
        self.name = model_name(model)
        self.outputs = getattr(model, "outputs", "logits")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.native or x.shape[-2] != self.native:
            x = F.interpolate(x, size=(self.native, self.native), mode="bilinear", align_corners=False,
                              antialias=True)
        return self.model(x)


def at_size(model, size: int):
    """`model` unchanged if it already takes `size`, else wrapped in AtSize (torch) or resized before it
    (scikit-learn models)."""
    if int(getattr(model, "input_size", size)) == int(size):
        return model
    if isinstance(model, nn.Module):
        return AtSize(model, size)
    if isinstance(model, SklearnModel):
        return SklearnModel(model.estimator, model.native, model.name, size=size)
    raise PatchlabError(f"{model_name(model)}: cannot resize its input")


# -- scikit-learn models ---------------------------------------------------------------------------------------
class LinearModel(nn.Module):
    """A linear classifier on flattened pixels (logits = x·Wᵀ + b): the differentiable form of a fitted
    scikit-learn LogisticRegression or LinearSVC, so gradient attacks run on it exactly."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, size: int, name: str = "linear"):
        super().__init__()
        self.weight = nn.Parameter(weight.clone(), requires_grad=False)
        self.bias = nn.Parameter(bias.clone(), requires_grad=False)
        self.input_size = int(size)
        self.labels = [str(i) for i in range(weight.shape[0])]
        self.name = name

    @classmethod
    def from_sklearn(cls, estimator, size: int, name: str | None = None,
                     dtype: torch.dtype = torch.float32) -> "LinearModel":
        coef = np.asarray(estimator.coef_, dtype=np.float64)
        intercept = np.asarray(estimator.intercept_, dtype=np.float64).reshape(-1)
        if coef.shape[0] == 1:  # a binary model: two classes with opposite scores
            coef, intercept = np.vstack([-coef, coef]) / 2, np.array([-intercept[0], intercept[0]]) / 2
        return cls(torch.from_numpy(coef).to(dtype), torch.from_numpy(intercept).to(dtype), size,
                   name or type(estimator).__name__)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).to(self.weight.dtype) @ self.weight.T + self.bias


class SklearnModel:
    """A fitted scikit-learn classifier as a callable on (N, 1, S, S) images in [0, 1], returning class
    probabilities (`predict_proba`) or one-hot decisions. Not differentiable: attacks on it go through a
    substitute. `size` lets it take images at another size (resized before flattening)."""

    outputs = "probs"

    def __init__(self, estimator, native: int, name: str, size: int | None = None):
        self.estimator = estimator
        self.native = int(native)
        self.input_size = int(size or native)
        self.name = name
        self.num_classes = len(estimator.classes_)
        self.labels = [str(c) for c in estimator.classes_]

    def parameters(self):  # so that model_device() answers "cpu"
        return iter(())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().float().cpu()
        if len(x) == 0:
            return torch.zeros(0, self.num_classes)
        if x.shape[-1] != self.native:
            x = F.interpolate(x, size=(self.native, self.native), mode="bilinear", align_corners=False,
                              antialias=True)
        flat = x.flatten(1).numpy()
        if hasattr(self.estimator, "predict_proba"):
            return torch.from_numpy(np.asarray(self.estimator.predict_proba(flat), dtype=np.float32))
        pred = np.asarray(self.estimator.predict(flat))
        index = np.searchsorted(self.estimator.classes_, pred)
        return F.one_hot(torch.from_numpy(index).long(), self.num_classes).float()


# -- fingerprints and a cache of trained digit models ----------------------------------------------------------
def fingerprint(*parts) -> str:
    """A short stable hash of tensors, arrays and JSON-able settings (for cache and checkpoint keys)."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, torch.Tensor):
            t = p.detach().cpu().contiguous()
            h.update(str((tuple(t.shape), str(t.dtype))).encode())
            h.update(t.numpy().tobytes())
        elif isinstance(p, np.ndarray):
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def model_fingerprint(model) -> str:
    """A hash of a model's weights (torch) or its name (other callables), to tie checkpoints to their victim."""
    if isinstance(model, nn.Module):
        return fingerprint(model_name(model), *model.state_dict().values())
    if hasattr(model, "models"):
        return fingerprint(*[model_fingerprint(m) for m in model.models])
    return fingerprint(model_name(model), repr(getattr(model, "estimator", "")))


def train_digits_model(kind: str, x: torch.Tensor, y: torch.Tensor, *, size: int | None = None, seed: int = 0,
                       epochs: int = 10, batch_size: int = 64, lr: float = 2e-3, cache_dir: str | Path | None = None,
                       name: str | None = None, progress: ProgressFn | None = None, **model_kwargs):
    """A `patchlab.models.digits` model trained on (x, y) with the shared `fit` loop. With `cache_dir` the result
    is saved as safetensors under a key of (kind, settings, data) and reused; training itself checkpoints per
    epoch there, so an interrupted run resumes."""
    from patchlab.models.digits import fit, load_digits_model, make_digits_model, save_digits_model

    size = int(size or x.shape[-1])
    settings = {"kind": kind, "size": size, "seed": seed, "epochs": epochs, "batch_size": batch_size, "lr": lr,
                **model_kwargs}
    key = fingerprint(settings, x, y)
    path = ckpt = None
    if cache_dir is not None:
        cache = Path(cache_dir)
        path = cache / f"{name or kind}-{key}.safetensors"
        ckpt = cache / f"{name or kind}-{key}.ckpt.pt"
        if path.is_file():
            model = load_digits_model(path)
            model.name = name or model.name
            return model
    model = make_digits_model(kind, size=size, seed=seed, **model_kwargs)
    fit(model, x, y, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, checkpoint=ckpt, progress=progress)
    model.eval()
    if path is not None:
        save_digits_model(model, path)
        ckpt.unlink(missing_ok=True)
    model.name = name or model.name
    return model


def fit_soft(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, *, progress: ProgressFn | None = None,
             **fit_options):
    """`patchlab.models.digits.fit` on soft targets (N, K) (a victim's probabilities) or hard labels (N,).

    The shared loop takes class labels; for distributions it is handed each example's index as its "label" and
    the loss looks the distribution up by index (its per-epoch train accuracy is then meaningless)."""
    from patchlab.models.digits import fit

    if targets.dim() == 1:
        return fit(model, x, targets, progress=progress, **fit_options)
    table = targets.float()

    def soft_cross_entropy(net: nn.Module, xb: torch.Tensor, idx: torch.Tensor, gen) -> torch.Tensor:
        return -(table[idx.cpu()].to(xb.device) * net(xb).log_softmax(1)).sum(1).mean()

    return fit(model, x, torch.arange(len(x)), loss_fn=soft_cross_entropy, progress=progress, **fit_options)
