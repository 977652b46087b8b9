"""Randomized smoothing (Cohen, Rosenfeld, Kolter 2019): the smoothed classifier g(x) = argmax_c P(f(x + N(0,
sigma^2 I)) = c) is certifiably constant within an l2 ball of radius sigma * Phi^-1(p_A) around x.

`predict` (Cohen's PREDICT): n noisy samples; the top two counts n_A, n_B; abstain (-1) unless a two-sided
binomial test of n_A against n_A + n_B at p = 1/2 rejects at level alpha.
`certify` (Cohen's CERTIFY): guess the class from n0 samples, count it in n fresh samples, p_A's one-sided
(1 - alpha) Clopper-Pearson lower bound; abstain if it is below 1/2, else the radius sigma * Phi^-1(lower bound).
All noise comes from a seeded generator, so runs repeat exactly.
"""

from __future__ import annotations

import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from patchlab.errors import PatchlabError
from patchlab.progress import ProgressFn

ABSTAIN = -1


def lower_confidence_bound(k: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower bound on a binomial proportion from k successes in n."""
    from scipy.stats import beta

    if k <= 0:
        return 0.0
    return float(beta.ppf(alpha, k, n - k + 1))


def radius(p_lower: float, sigma: float) -> float:
    """Certified l2 radius sigma * Phi^-1(p_lower) (Cohen Thm 1 with p_B = 1 - p_A); 0 when p_lower <= 1/2."""
    from scipy.stats import norm

    return float(sigma * norm.ppf(p_lower)) if p_lower > 0.5 else 0.0


class Smooth:
    """The smoothed version of `model` (images in [0, 1] -> logits) at noise level `sigma`."""

    def __init__(self, model: nn.Module, sigma: float, num_classes: int | None = None, batch_size: int = 500):
        if not sigma > 0:
            raise PatchlabError(f"sigma must be positive, got {sigma}")
        self.model, self.sigma, self.batch_size = model, float(sigma), int(batch_size)
        self.num_classes = int(num_classes or len(getattr(model, "labels", []) or []) or 0)
        if self.num_classes < 2:
            raise PatchlabError("randomized smoothing needs the number of classes (num_classes=)")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def counts(self, x: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
        """(num_classes,) class counts of the base model over n noisy copies of one image x (C, H, W)."""
        out = torch.zeros(self.num_classes, dtype=torch.long)
        left = int(n)
        x = x.to(self.device)
        while left > 0:
            b = min(self.batch_size, left)
            noise = torch.randn((b, *x.shape), generator=gen).to(self.device) * self.sigma
            pred = self.model(x[None] + noise).argmax(1).cpu()
            out += torch.bincount(pred, minlength=self.num_classes)
            left -= b
        return out

    def predict(self, x: torch.Tensor, n: int, alpha: float, gen: torch.Generator) -> int:
        from scipy.stats import binomtest

        c = self.counts(x, n, gen)
        top2 = c.topk(2)
        n_a, n_b = int(top2.values[0]), int(top2.values[1])
        if binomtest(n_a, n_a + n_b, 0.5).pvalue > alpha:
            return ABSTAIN
        return int(top2.indices[0])

    def certify(self, x: torch.Tensor, n0: int, n: int, alpha: float, gen: torch.Generator) -> tuple[int, float]:
        """(class, radius), or (-1, 0.0) when it abstains."""
        guess = int(self.counts(x, n0, gen).argmax())
        k = int(self.counts(x, n, gen)[guess])
        p_lower = lower_confidence_bound(k, n, alpha)
        if p_lower < 0.5:
            return ABSTAIN, 0.0
        return guess, radius(p_lower, self.sigma)


def noise_loss(sigma: float):
    """A `patchlab.models.digits.fit` loss: cross-entropy on Gaussian-noised inputs (Cohen's training)."""

    def gaussian_noise_cross_entropy(model, x, y, gen):
        return F.cross_entropy(model(x + sigma * torch.randn(x.shape, generator=gen).to(x.device)), y)

    gaussian_noise_cross_entropy.__name__ = f"gaussian_noise_ce_{sigma}"
    return gaussian_noise_cross_entropy


def certified_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float, n0: int = 100,
                    n: int = 1000, alpha: float = 0.001, radii=None, seed: int = 0, batch_size: int = 500,
                    progress: ProgressFn | None = None) -> dict:
    """Certify every image; certified accuracy (correct and radius >= r) at each r of `radii`."""
    from patchlab.stats import wilson_interval

    start = time.perf_counter()
    smooth = Smooth(model, sigma, batch_size=batch_size)
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for i, (image, label) in enumerate(zip(x, y.tolist())):
        cls, r = smooth.certify(image, n0, n, alpha, gen)
        rows.append({"label": label, "prediction": cls, "radius": r, "correct": cls == label})
        if progress:
            progress(i + 1, len(x), {"sigma": sigma, "certified@0": sum(q["correct"] for q in rows) / len(rows)})
    if radii is None:
        radii = [round(0.25 * i, 2) for i in range(0, 13)]
    curve = []
    for r in radii:
        k = sum(q["correct"] and q["radius"] >= r for q in rows)
        curve.append({"radius": float(r), "certified_accuracy": k / len(rows),
                      "ci95": list(wilson_interval(k, len(rows)))})
    abstained = sum(q["prediction"] == ABSTAIN for q in rows)
    return {"sigma": sigma, "n": len(rows), "n0": n0, "samples": n, "alpha": alpha, "seed": seed,
            "certified_accuracy": curve[0]["certified_accuracy"], "ci95": curve[0]["ci95"],
            "abstain_rate": abstained / len(rows), "curve": curve, "per_image": rows,
            "seconds": time.perf_counter() - start}


def train_noisy_digits(mnist, sigma: float, out, epochs: int = 10, train: int = 8000, split_seed: int = 0,
                       seed: int = 0, checkpoint=None, progress: ProgressFn | None = None, **fit_options) -> dict:
    """Cohen's noise-augmented training of the digits CNN on the training side of the shared MNIST split."""
    from patchlab.data import load_mnist, split_digits
    from patchlab.models.digits import fit, make_digits_model, save_digits_model

    tr = split_digits(load_mnist(mnist), {"train": train, "test": -1}, seed=split_seed)["train"]
    model = make_digits_model("cnn", size=28, seed=seed)
    cpu0 = time.process_time()
    result = fit(model, tr.images, tr.labels, epochs=epochs, seed=seed, loss_fn=noise_loss(sigma),
                 checkpoint=checkpoint, progress=progress, **fit_options)
    save_digits_model(model, out, "defense-model", "patchlab defend train smoothing")
    return {"out": str(out), "sigma": sigma, "n": len(tr), "epochs": len(result.history), "history": result.history,
            "seconds": result.seconds, "cpu_seconds": time.process_time() - cpu0}


__all__ = ["ABSTAIN", "Smooth", "certified_curve", "lower_confidence_bound", "noise_loss", "radius",
           "train_noisy_digits"]
