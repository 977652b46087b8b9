"""A printable perturbation of a whole photo (Kurakin 2016, Athalye 2018 2D EOT): an L-inf bounded change at the photo's
full resolution that stays adversarial when the printed photo is photographed.

Each step renders B views of the perturbed photo: shrink to about twice the model input (anti-aliased, so every
full-resolution pixel gets gradient), then place it in a frame filling `fill` of the area under the EOT preset's pose,
lighting and camera draws, over plain backgrounds (a table or wall). Signed-gradient steps (PGD) with the step
size decaying linearly, projected onto the eps ball and [0, 1] every step, and onto the 8-bit grid at the end so the
saved PNG is within eps of the input PNG.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from patchlab.errors import PatchlabError
from patchlab.progress import ProgressFn


@dataclass
class PerturbResult:
    adversarial: torch.Tensor  # (3, H, W) in [0, 1], on the 8-bit grid
    delta: torch.Tensor        # adversarial - original
    meta: dict


def _views(eot, image: torch.Tensor, size: int, fill: float, gen: torch.Generator, batch: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    scale = 2 * size / max(h, w)
    if scale < 1:
        image = F.interpolate(image[None], size=(max(2, round(h * scale)), max(2, round(w * scale))),
                              mode="bilinear", align_corners=False, antialias=True)[0]
    shade = torch.rand((batch, 3, 1, 1), generator=gen).mul(0.6).add(0.2).to(image.device)
    scenes = shade.expand(batch, 3, size, size)
    return eot(image, scenes, fill, gen).images


def printable_perturbation(image: torch.Tensor, model, eps: float, target: int | None = None, eot="print",
                           steps: int = 100, batch: int = 8, fill: float = 0.6, seed: int = 0,
                           eval_draws: int = 64, colour=None,
                           progress: ProgressFn | None = None) -> PerturbResult:
    """`image` (3, H, W) in [0, 1]; targeted when `target` is a class index, else pushes away from the clean top-1."""
    from patchlab.eot import EOT, load_config

    if image.dim() != 3 or image.shape[0] != 3:
        raise PatchlabError(f"expected one RGB image (3, H, W), got {tuple(image.shape)}")
    if not 0 < eps <= 1:
        raise PatchlabError(f"eps must lie in (0, 1], got {eps}")
    if steps < 1 or batch < 1:
        raise PatchlabError("steps and batch must be at least 1")
    cfg = load_config(eot)
    engine = EOT(cfg, colour)
    dev = model.device
    size = model.input_size
    x = image.to(dev)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        clean_label = int(model(_resize(x, size)).argmax(-1)[0])
    delta = torch.zeros_like(x, requires_grad=True)
    start = time.perf_counter()
    for step in range(steps):
        alpha = eps * (2.5 / steps) * (1 - step / steps) * 2 + eps / 200  # linear decay, mean ~2.5 eps / steps
        frames = _views(engine, (x + delta).clamp(0, 1), size, fill, gen, batch)
        logp = model(frames).log_softmax(-1)
        if target is not None:
            loss = -logp[:, target].mean()
            success = float((logp.argmax(-1) == target).float().mean())
        else:
            loss = logp[:, clean_label].mean()
            success = float((logp.argmax(-1) != clean_label).float().mean())
        delta.grad = None
        loss.backward()
        with torch.no_grad():
            delta -= alpha * delta.grad.sign()
            delta.clamp_(-eps, eps)
            delta.copy_((x + delta).clamp(0, 1) - x)
        if progress:
            progress(step + 1, steps, {"loss": float(loss.detach()), "batch_success": success})
    with torch.no_grad():
        levels = int(eps * 255 + 1e-6)  # whole 8-bit levels inside eps
        x8 = (x * 255).round()
        adv8 = ((x + delta) * 255).round().clamp(x8 - levels, x8 + levels).clamp(0, 255)
        adv = adv8 / 255
        ev = evaluate_perturbation(image, adv.cpu(), model, target, cfg, fill=fill, draws=eval_draws,
                                   seed=seed + 7919, colour=colour)
    meta = {"eps": eps, "linf": float((adv - x8 / 255).abs().max()), "linf_levels": levels, "target": target,
            "clean_label": clean_label, "steps": steps, "batch": batch, "fill": fill, "seed": seed,
            "eot": cfg.to_dict(), "model": model.name, "seconds": time.perf_counter() - start, **ev}
    return PerturbResult(adv.cpu(), (adv - x8 / 255).cpu(), meta)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    from patchlab.models import preprocess

    return preprocess(x, size)[None]


def evaluate_perturbation(original: torch.Tensor, adversarial: torch.Tensor, model, target: int | None, eot="print",
                          fill: float = 0.6, draws: int = 64, seed: int = 1234, colour=None) -> dict:
    """Success rate of the adversarial and of the original photo under `draws` fresh EOT views (same draws)."""
    from patchlab.eot import EOT, load_config
    from patchlab.stats import wilson_interval

    engine = EOT(load_config(eot), colour)
    dev = model.device
    with torch.no_grad():
        clean_label = int(model(_resize(original.to(dev), model.input_size)).argmax(-1)[0])
        out = {}
        for name, img in (("adversarial", adversarial), ("original", original)):
            gen = torch.Generator().manual_seed(seed)
            pred = model(_views(engine, img.to(dev), model.input_size, fill, gen, draws)).argmax(-1).cpu()
            hits = int((pred == target).sum()) if target is not None else int((pred != clean_label).sum())
            out[name] = (hits, len(pred))
    k, n = out["adversarial"]
    k0, _ = out["original"]
    return {"success_rate": k / n, "ci95": list(wilson_interval(k, n)), "n": n,
            "original_success_rate": k0 / n}
