"""Clean-label feature-collision poisons (Shafahi et al. 2018, "Poison Frogs!", section 2 and 3).

A poison p looks like a base image b of class B (close in pixel space) but sits on the target t (class A) in
feature space:

    p = argmin_x ||f(x) - f(t)||^2 + beta ||x - b||^2,     beta = beta0 * (D / dim_b)^2 in 0-255 pixel units

(D the feature size, dim_b the number of pixel values; beta0 = 0.25 as in the paper), solved by forward-backward
splitting: a step on the feature term, then the proximal step of the pixel term,
x <- (x_hat + lr beta b) / (1 + lr beta), clipped to [0, 1]. The poison is added to the training set with its *correct* label B, the head is retrained,
and the attack succeeds when the target is now classified as B. Watermarking (section 4.2) blends the target into
the base at `opacity` before the optimisation starts: b <- (1 - opacity) b + opacity t.

The final poison is rounded to 8 bits and every success check uses that rounded image.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from patchlab.errors import PatchlabError, check_unit_interval
from patchlab.poisoning import head as H
from patchlab.poisoning.defense_view import defense_view
from patchlab.poisoning.features import penultimate
from patchlab.poisoning.koh_liang import CleanModel, train_clean
from patchlab.poisoning.runs import append_journal, read_journal
from patchlab.poisoning.task import TransferTask
from patchlab.progress import ProgressFn



@dataclass
class FeatureCollisionConfig:
    beta0: float = 0.25
    opacity: float = 0.0   # watermark opacity of the target in the base
    max_iters: int = 100
    lr: float = 0.01       # Adam forward step, in [0, 1] pixel units (cosine-decayed to lr / 10)
    l2: float = 1e-3
    batch: int = 8         # poisons crafted together (one forward/backward for the batch)
    seed: int = 0

    def check(self) -> None:
        check_unit_interval("opacity", self.opacity)
        if self.opacity >= 1:
            raise PatchlabError("opacity must be < 1 (at 1 the 'base' is the target itself)")
        if not self.beta0 >= 0 or self.max_iters < 1 or self.batch < 1 or not self.lr > 0:
            raise PatchlabError("beta0 must be >= 0, lr > 0, max_iters and batch >= 1")


def beta(config: FeatureCollisionConfig, feature_dim: int, image_shape: tuple[int, ...]) -> float:
    """The paper's beta0 * (D / dim_b)^2 for 0-255 pixels, converted to [0, 1] pixels (x 255^2)."""
    dim_b = 1
    for s in image_shape:
        dim_b *= int(s)
    return config.beta0 * (feature_dim / dim_b) ** 2 * 255 ** 2


@dataclass
class Crafted:
    poisons: torch.Tensor        # (m, 3, S, S), 8-bit exact
    bases: torch.Tensor          # the (watermarked) bases the pixel term pulls toward
    feature_distance: list[float]  # ||f(poison) - f(target)|| at the end
    start_distance: list[float]    # ||f(base) - f(target)||
    iterations: int


def craft(model, targets: torch.Tensor, bases: torch.Tensor, config: FeatureCollisionConfig,
          progress: ProgressFn | None = None, stop=None) -> Crafted:
    """Forward-backward splitting for a batch of (target, base) image pairs, all in [0, 1].

    The forward step is an Adam step on the feature term (the plain gradient step of the paper stalls within a few
    hundred iterations on Lite0; the authors' own code has an Adam forward step too); the backward step is the
    exact proximal step of the pixel term for the current step size. The step size follows a cosine from `lr` to
    lr / 10."""
    import math

    config.check()
    with torch.no_grad():
        f_t = penultimate(model, targets).float()
    b = ((1 - config.opacity) * bases + config.opacity * targets).clamp(0, 1)
    bt = beta(config, f_t.shape[1], tuple(bases.shape[1:]))
    x = b.clone()
    m1 = torch.zeros_like(x)
    m2 = torch.zeros_like(x)
    start: list[float] = []
    it = 0
    for it in range(1, config.max_iters + 1):
        xg = x.detach().requires_grad_(True)
        dist = (penultimate(model, xg).float() - f_t).pow(2).sum(1)
        grad, = torch.autograd.grad(dist.sum(), xg)
        if it == 1:
            start = dist.detach().sqrt().tolist()
        m1.mul_(0.9).add_(grad, alpha=0.1)
        m2.mul_(0.999).addcmul_(grad, grad, value=0.001)
        metric = (m2 / (1 - 0.999 ** it)).sqrt() + 1e-8
        lr = config.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * (it - 1) / config.max_iters)))
        x_hat = x - lr * (m1 / (1 - 0.9 ** it)) / metric
        # prox of beta ||x - b||^2 in the same diagonal metric: argmin beta|x-b|^2 + |x - x_hat|^2_metric / (2 lr)
        x = ((metric * x_hat + 2 * lr * bt * b) / (metric + 2 * lr * bt)).clamp(0, 1)
        if progress is not None:
            progress(it, config.max_iters, {"feature_distance": float(dist.detach().sqrt().mean())})
        if stop is not None and stop.is_set():
            break
    poisons = (x * 255).round() / 255
    with torch.no_grad():
        final = (penultimate(model, poisons).float() - f_t).norm(dim=1)
    return Crafted(poisons, b, final.tolist(), start, it)


@dataclass
class PairResult:
    target: int
    base: int
    target_view: str
    base_view: str
    target_label: str
    base_label: str
    success: bool
    after_pred: str
    after_confidence: float
    target_base_prob_before: float
    target_base_prob_after: float
    start_distance: float
    feature_distance: float
    poison_linf: float       # from the original (un-watermarked) base
    poison_l2: float
    others_moved: int
    n_test: int
    opacity: float
    iterations: int
    seconds: float
    defense: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PairOutcome:
    """A pair's result and the images and target probabilities its figure needs."""

    result: PairResult
    target: torch.Tensor
    base: torch.Tensor
    poison: torch.Tensor
    before: torch.Tensor
    after: torch.Tensor


def choose_pairs(task: TransferTask, clean: CleanModel, count: int, seed: int = 0) -> list[tuple[int, int]]:
    """`count` (target, base) pairs of test views: targets correctly classified, bases of the other class and
    classified as it; half the pairs each way; target photos and base views drawn in a seeded order."""
    gen = torch.Generator().manual_seed(seed)
    pairs = []
    for direction in (0, 1):
        want = count // 2 + (count % 2 if direction == 0 else 0)
        t_idx = [i for i, v in enumerate(task.test) if v.label == direction and int(clean.test_pred[i]) == direction]
        b_idx = [i for i, v in enumerate(task.test) if v.label != direction and int(clean.test_pred[i]) == v.label]
        if not t_idx or not b_idx:
            raise PatchlabError(f"no correctly classified test views of class {task.class_names[direction]} "
                                "or of the other class to pair")
        t_order = [t_idx[j] for j in torch.randperm(len(t_idx), generator=gen).tolist()]
        b_order = [b_idx[j] for j in torch.randperm(len(b_idx), generator=gen).tolist()]
        for j in range(want):
            pairs.append((t_order[j % len(t_order)], b_order[j % len(b_order)]))
    return pairs


def evaluate_poison(task: TransferTask, clean: CleanModel, model, target: int, base: int, poison: torch.Tensor,
                    with_defense: bool = True) -> tuple[bool, dict, torch.Tensor, torch.Tensor]:
    """Add the poison with the base's label, retrain, and look at the target. Returns (success, numbers,
    test probabilities after, poisoned head)."""
    d = task.train_features.shape[1]
    with torch.no_grad():
        f_p = penultimate(model, poison.unsqueeze(0)).double().cpu()
    y_b = task.test[base].label
    x = torch.cat([clean.prob.x, H.with_bias(f_p)])
    y = torch.cat([clean.prob.y, torch.tensor([y_b])])
    prob = H.Problem(x, y, 2, clean.prob.l2)
    fit = H.fit(prob, init=clean.theta)
    after = H.probabilities(fit.theta, task.test_features)
    pred = after.argmax(1)
    moved = pred != clean.test_pred
    moved[target] = False
    nums = {"after_pred": task.class_names[int(pred[target])], "after_confidence": float(after[target].max()),
            "target_base_prob_before": float(clean.test_probs[target, y_b]),
            "target_base_prob_after": float(after[target, y_b]), "others_moved": int(moved.sum())}
    if with_defense:
        feats = torch.cat([task.train_features, f_p.float()])
        y_t = task.test[target].label
        nums["defense"] = defense_view(fit.theta, prob, feats, task.test_features[target], y_t, [len(y) - 1])
    return int(pred[target]) == y_b, nums, after, fit.theta


def run_pairs(task: TransferTask, model, config: FeatureCollisionConfig, pairs: list[tuple[int, int]],
              log: str | Path | None = None, progress: ProgressFn | None = None, stop=None,
              on_outcome: Callable[[PairOutcome], None] | None = None,
              clean: CleanModel | None = None) -> list[PairResult]:
    """Craft one poison per pair (in batches), evaluate each alone (the clean training set plus that poison).
    With `log` (JSONL), finished pairs are kept and a rerun resumes with the rest. `on_outcome` receives each
    newly computed pair with its images."""
    config.check()
    clean = clean or train_clean(task, config.l2)
    key = {"config": asdict(config), "task": task.config.to_dict(), "model": task.model_name}
    done: dict[tuple[int, int], PairResult] = {}
    log = Path(log) if log else None
    for row in read_journal(log, key):
        r = PairResult(**row)
        done[(r.target, r.base)] = r
    results: dict[int, PairResult] = {}
    todo = [j for j, p in enumerate(pairs) if p not in done]
    for j, p in enumerate(pairs):
        if p in done:
            results[j] = done[p]
    for start in range(0, len(todo), config.batch):
        if stop is not None and stop.is_set():
            break
        chunk = todo[start:start + config.batch]
        t0 = time.perf_counter()
        tgt = torch.stack([task.image(task.test[pairs[j][0]]) for j in chunk])
        bas = torch.stack([task.image(task.test[pairs[j][1]]) for j in chunk])
        done_before = len(results)

        def inner(step, total, metrics, _n=done_before):
            if progress is not None:
                progress(_n * total + step * len(chunk), len(pairs) * total, metrics)

        crafted = craft(model, tgt, bas, config, progress=inner, stop=stop)
        per_pair = (time.perf_counter() - t0) / len(chunk)
        for k, j in enumerate(chunk):
            t_i, b_i = pairs[j]
            t1 = time.perf_counter()
            ok, nums, after, _ = evaluate_poison(task, clean, model, t_i, b_i, crafted.poisons[k])
            diff = crafted.poisons[k] - bas[k]
            results[j] = PairResult(
                t_i, b_i, task.test[t_i].name, task.test[b_i].name, task.class_names[task.test[t_i].label],
                task.class_names[task.test[b_i].label], ok, nums["after_pred"], nums["after_confidence"],
                nums["target_base_prob_before"], nums["target_base_prob_after"], crafted.start_distance[k],
                crafted.feature_distance[k], float(diff.abs().max()), float(diff.norm()), nums["others_moved"],
                len(task.test), config.opacity, crafted.iterations, per_pair + time.perf_counter() - t1,
                nums.get("defense", []))
            if on_outcome is not None:
                on_outcome(PairOutcome(results[j], tgt[k], bas[k], crafted.poisons[k], clean.test_probs[t_i],
                                       after[t_i]))
            append_journal(log, key, results[j].to_dict())
    return [results[j] for j in sorted(results)]


def summarize(results: list[PairResult]) -> dict:
    from patchlab.poisoning.defense_view import summarize as defense_summary
    from patchlab.stats import wilson_interval

    n = len(results)
    wins = sum(r.success for r in results)
    out = {"n": n, "successes": wins, "success_rate": wins / n if n else 0.0, "ci95": list(wilson_interval(wins, n))}
    per = {}
    for name in sorted({r.target_label for r in results}):
        sub = [r for r in results if r.target_label == name]
        w = sum(r.success for r in sub)
        per[f"{name}->{sub[0].base_label}"] = {"n": len(sub), "success_rate": w / len(sub),
                                                "ci95": list(wilson_interval(w, len(sub)))}
    out["per_direction"] = per
    if results:
        linf = sorted(r.poison_linf for r in results)
        out["median_poison_linf"] = linf[n // 2]
        out["median_feature_distance"] = sorted(r.feature_distance for r in results)[n // 2]
        out["median_start_distance"] = sorted(r.start_distance for r in results)[n // 2]
        out["mean_others_moved"] = sum(r.others_moved for r in results) / n
    rows = [row for r in results for row in r.defense]
    if rows:
        out["defense"] = defense_summary(rows)
    out["seconds"] = sum(r.seconds for r in results)
    return out
