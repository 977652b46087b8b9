"""Influence-guided training-set poisoning (Koh & Liang 2017, section 5.2): the talk's dog -> fish attack.

For one correctly classified target test image, perturb k training images inside an L-inf box so that the head,
*retrained* on the poisoned set, misclassifies the target. The training labels are not touched. Each step:

1. render the poisons on the 8-bit grid and take their features through the whole network (Lite0);
2. retrain the head to its optimum on the poisoned training set (warm-started Newton, see `head.fit`);
3. stop if the target's prediction has flipped;
4. s_test = H^-1 grad L(target) at the retrained head (conjugate gradients preconditioned by the last Hessian
   factor: exact to 1e-10), and the influence of perturbing poison j on the target loss,
   d L_test / d x_j = -(1/n) d/dx_j [ s_test . grad_theta L(x_j, y_j) ]  (I_pert,loss),
   back-propagated through the head *and* the network to the pixels of x_j;
5. a signed step of `step`, projected onto the box around the original image and onto [0, 1].

The optimisation runs on a continuous copy; every check (steps 1-3) uses the 8-bit rounding of it, so the poison
that flips the target is a real image that saves losslessly as PNG and stays inside its box.

Which training images to poison: Koh & Liang rank training images by the size of this pixel gradient; computing
it for every training image costs one backward pass through the network each, so here the ranking uses the same
gradient taken at the feature layer (closed form, all training points at once), and pixels are back-propagated only
for the k chosen poisons.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from patchlab.errors import PatchlabError
from patchlab.poisoning import head as H
from patchlab.poisoning.defense_view import defense_view
from patchlab.poisoning.features import penultimate
from patchlab.poisoning.runs import append_journal, read_journal
from patchlab.poisoning.task import TransferTask
from patchlab.progress import ProgressFn



@dataclass
class KohLiangConfig:
    num_poisons: int = 1
    eps: float = 2 / 255   # L-inf box around each poisoned training image
    step: float = 0.5 / 255
    max_iters: int = 40
    l2: float = 1e-3       # head weight decay
    candidates: str = "other-class"  # poison training images of the other class ("other-class") or of any ("any")
    seed: int = 0

    def check(self) -> None:
        if self.num_poisons < 1:
            raise PatchlabError(f"num_poisons must be >= 1, got {self.num_poisons}")
        if not 0 < self.eps <= 1 or self.eps * 255 < 1 - 1e-6:
            raise PatchlabError(f"eps must lie in [1/255, 1] (a smaller box holds no other 8-bit image), got {self.eps}")
        if self.candidates not in ("other-class", "any"):
            raise PatchlabError(f"candidates must be 'other-class' or 'any', got {self.candidates!r}")
        if not self.step > 0 or self.max_iters < 1:
            raise PatchlabError("step must be > 0 and max_iters >= 1")


@dataclass
class CleanModel:
    """The head trained on the clean training set, with what every target's attack starts from."""

    theta: torch.Tensor
    prob: H.Problem
    factor: H.Factor
    test_probs: torch.Tensor   # (n_test, 2)
    test_pred: torch.Tensor


def train_clean(task: TransferTask, l2: float = 1e-3) -> CleanModel:
    prob = H.Problem.from_features(task.train_features, task.train_labels, 2, l2=l2)
    fit = H.fit(prob)
    factor = H.factorize(fit.theta, prob)
    probs = H.probabilities(fit.theta, task.test_features)
    return CleanModel(fit.theta, prob, factor, probs, probs.argmax(1))


@dataclass
class TargetResult:
    target: int
    target_view: str
    true_label: str
    attacked: bool            # False when the clean model already misclassifies the target
    flipped: bool = False
    iterations: int = 0
    before_true_prob: float = 0.0
    after_true_prob: float = 0.0
    after_pred: str = ""
    after_confidence: float = 0.0  # the retrained model's probability for its (new) prediction
    others_moved: int = 0          # other test predictions changed by the poisoning
    n_test: int = 0
    poisons: list[int] = field(default_factory=list)
    poison_views: list[str] = field(default_factory=list)
    poison_linf: list[float] = field(default_factory=list)
    defense: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    num_poisons: int = 1
    eps: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PoisonOutcome:
    """A result plus the tensors the figures need (not serialised)."""

    result: TargetResult
    originals: torch.Tensor | None = None  # (k, 3, S, S) in [0, 1]
    poisons: torch.Tensor | None = None    # 8-bit-exact, same shape
    target_image: torch.Tensor | None = None
    before_probs: torch.Tensor | None = None
    after_probs: torch.Tensor | None = None


def feature_gradient_scores(theta: torch.Tensor, prob: H.Problem, s_test: torch.Tensor, d: int) -> torch.Tensor:
    """|| d/d phi_i [ s_test . grad_theta L(phi_i, y_i) ] || for every training point: how strongly moving each
    training point's features moves the retrained model's target loss (Koh & Liang's candidate ranking, taken at
    the feature layer)."""
    phi = prob.x[:, :d].clone().requires_grad_(True)
    x = torch.cat([phi, prob.x[:, d:]], 1)
    g = H.example_gradient(theta, x, prob.y)  # (n, C-1, D+1)
    (g * s_test).sum().backward()
    return phi.grad.norm(dim=1)


def _s_test(theta: torch.Tensor, prob: H.Problem, factor: H.Factor, xt: torch.Tensor, yt: int) -> torch.Tensor:
    from patchlab.poisoning.influence import test_gradient

    g, _ = test_gradient(theta, xt, yt)
    s, _ = H.conjugate_gradient(lambda v: H.hvp(theta, v, prob), g, tol=1e-10, max_iter=200, precond=factor.solve)
    return s


def attack_target(task: TransferTask, model, clean: CleanModel, target: int, config: KohLiangConfig,
                  progress: ProgressFn | None = None, with_defense: bool = True) -> PoisonOutcome:
    """Poison `config.num_poisons` training images against test view `target`; retrain; report."""
    config.check()
    t0 = time.perf_counter()
    names = task.class_names
    view = task.test[target]
    y_t = view.label
    x_t = task.test_features[target]
    res = TargetResult(target, view.name, names[y_t], attacked=bool(clean.test_pred[target] == y_t),
                       before_true_prob=float(clean.test_probs[target, y_t]), n_test=len(task.test),
                       num_poisons=config.num_poisons, eps=config.eps)
    if not res.attacked:
        res.seconds = time.perf_counter() - t0
        return PoisonOutcome(res)
    d = task.train_features.shape[1]
    s0 = _s_test(clean.theta, clean.prob, clean.factor, x_t, y_t)
    scores = feature_gradient_scores(clean.theta, clean.prob, s0, d)
    if config.candidates == "other-class":
        scores = torch.where(clean.prob.y != y_t, scores, torch.full_like(scores, -1.0))
    chosen = torch.argsort(scores, descending=True)
    poisons = chosen[:config.num_poisons].tolist()
    res.poisons = poisons
    res.poison_views = [task.train[i].name for i in poisons]
    originals = torch.stack([task.image(task.train[i]) for i in poisons])
    # the box on the 8-bit grid, in grey levels: a pixel moves by whole levels only
    levels = float(int(config.eps * 255 + 1e-6))
    o255 = (originals * 255).round()
    lo, hi = (o255 - levels).clamp(0, 255), (o255 + levels).clamp(0, 255)
    x_cont = originals.clone()
    y_p = clean.prob.y[poisons]
    theta, factor = clean.theta, clean.factor
    prob = clean.prob
    steps = 0
    for it in range(config.max_iters + 1):
        x_q = (torch.minimum(torch.maximum((x_cont * 255).round(), lo), hi) / 255).requires_grad_(True)
        phi = penultimate(model, x_q).double().cpu()
        xs = prob.x.clone()
        xs[poisons, :d] = phi.detach().cpu()
        prob = clean.prob.replace(x=xs)
        fit = H.fit(prob, init=theta, factor=factor)
        theta, factor = fit.theta, fit.factor or factor
        p_t = H.probabilities(theta, x_t.reshape(1, -1))[0]
        steps = it
        if progress is not None:
            progress(it, config.max_iters, {"target_true_prob": float(p_t[y_t])})
        if int(p_t.argmax()) != y_t or it == config.max_iters:
            break
        s = _s_test(theta, prob, factor, x_t, y_t)
        xb = torch.cat([phi, torch.ones(len(poisons), 1, dtype=phi.dtype)], 1)
        g = H.example_gradient(theta, xb, y_p)
        objective = -(g * s).sum() / prob.n  # predicted rise of the target loss (I_pert,loss . delta)
        grad, = torch.autograd.grad(objective, x_q)
        x_cont = torch.minimum(torch.maximum(x_cont + config.step * grad.sign(), lo / 255), hi / 255)
    poisoned = x_q.detach()
    after = H.probabilities(theta, task.test_features)
    pred_after = after.argmax(1)
    moved = (pred_after != clean.test_pred)
    moved[target] = False
    res.flipped = bool(pred_after[target] != y_t)
    res.iterations = steps
    res.after_true_prob = float(after[target, y_t])
    res.after_pred = names[int(pred_after[target])]
    res.after_confidence = float(after[target].max())
    res.others_moved = int(moved.sum())
    res.poison_linf = [float((poisoned[j] - originals[j]).abs().max()) for j in range(len(poisons))]
    if with_defense:
        feats = task.train_features.clone()
        feats[poisons] = prob.x[poisons, :d].float()
        res.defense = defense_view(theta, prob, feats, x_t, y_t, poisons)
    res.seconds = time.perf_counter() - t0
    return PoisonOutcome(res, originals, poisoned, task.image(view), clean.test_probs[target], after[target])


# --- many targets, resumable -------------------------------------------------------------------------------------
def choose_targets(task: TransferTask, clean: CleanModel, count: int | None, seed: int = 0) -> list[int]:
    """`count` correctly classified test views, balanced over the two classes, in a seeded order (None: all)."""
    gen = torch.Generator().manual_seed(seed)
    per_class = []
    for c in (0, 1):
        idx = [i for i in range(len(task.test)) if task.test[i].label == c and int(clean.test_pred[i]) == c]
        per_class.append([idx[j] for j in torch.randperm(len(idx), generator=gen).tolist()])
    out = []
    while any(per_class) and (count is None or len(out) < count):
        for lst in per_class:
            if lst and (count is None or len(out) < count):
                out.append(lst.pop(0))
    return out


def summarize(results: list[TargetResult]) -> dict:
    """Flip rate (with a Wilson interval) over the attacked targets, per class and overall."""
    from patchlab.poisoning.defense_view import summarize as defense_summary
    from patchlab.stats import wilson_interval

    attacked = [r for r in results if r.attacked]
    flips = sum(r.flipped for r in attacked)
    out = {"n": len(attacked), "flipped": flips, "flip_rate": flips / len(attacked) if attacked else 0.0,
           "ci95": list(wilson_interval(flips, len(attacked)))}
    per = {}
    for name in sorted({r.true_label for r in attacked}):
        sub = [r for r in attacked if r.true_label == name]
        f = sum(r.flipped for r in sub)
        per[name] = {"n": len(sub), "flip_rate": f / len(sub), "ci95": list(wilson_interval(f, len(sub)))}
    out["per_class"] = per
    flipped = [r for r in attacked if r.flipped]
    if flipped:
        conf = sorted(r.after_confidence for r in flipped)
        moved = sorted(r.others_moved for r in flipped)
        its = sorted(r.iterations for r in flipped)
        out["median_confidence_after"] = conf[len(conf) // 2]
        out["median_others_moved"] = moved[len(moved) // 2]
        out["mean_others_moved"] = sum(moved) / len(moved)
        out["median_iterations"] = its[len(its) // 2]
    rows = [row for r in flipped for row in r.defense]
    if rows:
        out["defense"] = defense_summary(rows)
    out["seconds"] = sum(r.seconds for r in results)
    return out


def run_targets(task: TransferTask, model, config: KohLiangConfig, targets: list[int],
                log: str | Path | None = None, progress: ProgressFn | None = None, stop=None,
                on_outcome: Callable[[PoisonOutcome], None] | None = None,
                clean: CleanModel | None = None) -> list[TargetResult]:
    """Attack each target in turn. With `log`, results are appended to a JSONL file as they finish and a rerun
    reuses the ones already there for this config (a resumed run equals an uninterrupted one: every target's
    attack starts from the same clean model). `on_outcome` receives each newly computed outcome (images
    included)."""
    clean = clean or train_clean(task, config.l2)
    done: dict[int, TargetResult] = {}
    key = {"config": asdict(config), "task": task.config.to_dict(), "model": task.model_name}
    log = Path(log) if log else None
    for row in read_journal(log, key):
        done[int(row["target"])] = TargetResult(**row)
    results = []
    for j, t in enumerate(targets):
        if t in done:
            results.append(done[t])
        else:
            out = attack_target(task, model, clean, t, config)
            results.append(out.result)
            if on_outcome is not None:
                on_outcome(out)
            append_journal(log, key, out.result.to_dict())
        if progress is not None:
            flips = sum(r.flipped for r in results if r.attacked)
            progress(j + 1, len(targets), {"flip_rate": flips / max(1, sum(r.attacked for r in results))})
        if stop is not None and stop.is_set():
            break
    return results


__all__ = ["CleanModel", "KohLiangConfig", "PoisonOutcome", "TargetResult", "attack_target", "choose_targets",
           "run_targets", "summarize", "train_clean"]
