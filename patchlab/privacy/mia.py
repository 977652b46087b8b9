"""Membership inference: was this example in the training set? The attack that DP bounds.

    from patchlab.privacy.mia import MIAConfig, run_mia
    res = run_mia(data.private, MIAConfig(shadows=8, trainer="fit", epochs=60), out_dir="runs/mia")
    res.attacks["lira_online_fixed"]["auc"], res.attacks["lira_online_fixed"]["tpr_at_0.1%"]

The experiment of Carlini et al. 2022 (LiRA, arXiv:2112.03570): `shadows + 1` models, each trained on a random
half of a pool (every example is in each model's training set independently with probability 1/2). Each model in
turn is the target and the other `shadows` are the attacker's shadow models (leave-one-out), so every (model,
example) pair is one scored guess with a known answer. Scores:
- "loss": the global loss threshold (Yeom et al. 2018): a lower loss means member; `yeom` is also the single
  point at Yeom's threshold, the target's mean training loss;
- LiRA on the logit-scaled confidence phi = log(p_y / (1 - p_y)) of the true class: "lira_online" (Gaussians fitted
  to phi under IN and OUT shadows, the likelihood ratio), "lira_offline" (OUT shadows only, a one-sided test), each
  with per-example variance or with one global variance ("_fixed", better with few shadows).
Results: the ROC (log-log), AUC, TPR at 0.1% and 1% FPR. For a DP-trained target the (epsilon, delta) bound
TPR <= e^eps FPR + delta is checked at a grid of thresholds with confidence bounds: a point above it would mean a
bug in the DP training or its accounting (`bound_violations`).
"""

from __future__ import annotations

import math
import threading
import warnings
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from patchlab.data import Digits
from patchlab.errors import PatchlabError
from patchlab.privacy.parallel import TrainJob, train_many
from patchlab.privacy.rdp import dp_auc_bound, dp_roc_bound

from patchlab.progress import ProgressFn
from patchlab.registry import Registry

# the membership scores run_mia computes for every (model, example) pair; the object is the LiRA variant
# (online, fixed variance), () for the loss threshold
ATTACKS: Registry[tuple] = Registry("membership attack")
ATTACKS.register("loss", (), title="loss threshold (Yeom)", aliases=("yeom",))
ATTACKS.register("lira_online", (True, False), title="LiRA online")
ATTACKS.register("lira_online_fixed", (True, True), title="LiRA online, fixed variance")
ATTACKS.register("lira_offline", (False, False), title="LiRA offline")
ATTACKS.register("lira_offline_fixed", (False, True), title="LiRA offline, fixed variance")
TRAINERS = ("fit", "dpsgd")
FPR_LEVELS = (0.001, 0.01)


@dataclass
class MIAConfig:
    shadows: int = 8             # models besides the target (shadows + 1 models are trained)
    pool: int = 1000             # examples of the private part that the models draw their halves from
    trainer: str = "fit"         # "fit" (non-private; overfit with many epochs) or "dpsgd"
    model: str = "dpcnn"
    activation: str = "relu"
    epochs: int = 60
    lr: float = 2e-3             # fit: Adam's lr; dpsgd: SGD's lr
    batch_size: int = 64
    target_epsilon: float = 8.0  # dpsgd only
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    augment: bool = False        # also query 4 one-pixel shifts and average the per-query scores
    seed: int = 0
    workers: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "MIAConfig":
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise PatchlabError(f"unknown MIA settings: {', '.join(sorted(unknown))}")
        return cls(**data)

    def validate(self, n_available: int) -> None:
        if self.shadows < 2:
            raise PatchlabError(f"shadows must be >= 2 (LiRA fits IN and OUT distributions), got {self.shadows}")
        if not 4 <= self.pool <= n_available:
            raise PatchlabError(f"pool must lie in [4, {n_available}], got {self.pool}")
        if self.trainer not in TRAINERS:
            raise PatchlabError(f"unknown trainer '{self.trainer}' (choose from {', '.join(TRAINERS)})")
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise PatchlabError("epochs and batch_size must be >= 1 and lr > 0")

    def job_settings(self) -> dict:
        if self.trainer == "fit":
            return {"epochs": self.epochs, "lr": self.lr, "batch_size": self.batch_size}
        return {"target_epsilon": self.target_epsilon, "delta": self.delta, "max_grad_norm": self.max_grad_norm,
                "epochs": self.epochs, "batch_size": self.batch_size, "physical_batch_size": 512, "lr": self.lr}


def membership(models: int, pool: int, seed: int) -> np.ndarray:
    """(models, pool) bool: example j is in model i's training set, independently with probability 1/2."""
    g = torch.Generator().manual_seed(int(seed) + 99)
    return (torch.rand(models, pool, generator=g) < 0.5).numpy()


def _shifts(x: torch.Tensor, augment: bool) -> list[torch.Tensor]:
    if not augment:
        return [x]
    return [x] + [torch.roll(x, shifts=s, dims=d) for d in (2, 3) for s in (1, -1)]


@torch.no_grad()
def model_scores(model, x: torch.Tensor, y: torch.Tensor, augment: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(phi, loss): the logit-scaled confidence z_y - logsumexp_{j != y} z_j, shape (queries, n), and the
    cross-entropy on the un-augmented input, shape (n,)."""
    from patchlab.models.digits import predict_logits

    phis, loss = [], None
    for xa in _shifts(x, augment):
        z = predict_logits(model, xa).double()
        zy = z.gather(1, y.view(-1, 1)).squeeze(1)
        others = z.scatter(1, y.view(-1, 1), -math.inf)
        phis.append((zy - torch.logsumexp(others, 1)).numpy())
        if loss is None:
            loss = (torch.logsumexp(z, 1) - zy).numpy()
    return np.stack(phis), loss


def roc(scores: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) of "member if score >= t", one point per distinct score, from (0, 0) to (1, 1)."""
    s = np.asarray(scores, dtype=np.float64)
    m = np.asarray(members, dtype=bool)
    order = np.argsort(-s, kind="mergesort")
    s, m = s[order], m[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # the last index of each run of equal scores
    tp, fp = np.cumsum(m)[last], np.cumsum(~m)[last]
    pos, neg = max(int(m.sum()), 1), max(int((~m).sum()), 1)
    return np.r_[0.0, fp / neg], np.r_[0.0, tp / pos], np.r_[np.inf, s[last]]


def auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    return float(np.trapezoid(tpr, fpr))


def tpr_at(fpr: np.ndarray, tpr: np.ndarray, level: float) -> float:
    """The highest TPR among thresholds whose FPR is at most `level`."""
    ok = fpr <= level
    return float(tpr[ok].max()) if ok.any() else 0.0


def _norm_logpdf(x, mu, sd):
    return -0.5 * ((x - mu) / sd) ** 2 - np.log(sd) - 0.5 * math.log(2 * math.pi)


def lira_scores(phi_target: np.ndarray, phi_shadow: np.ndarray, in_shadow: np.ndarray, online: bool = True,
                fixed_variance: bool = False) -> np.ndarray:
    """LiRA scores for one target: phi_target (queries, n), phi_shadow (shadows, queries, n), in_shadow
    (shadows, n) bool. Higher = more likely a member. Means are medians over shadows (robust with few of them);
    an example with no IN (or OUT) shadow borrows the average IN-OUT shift of the others."""
    eps = 1e-6
    ins = np.where(in_shadow[:, None, :], phi_shadow, np.nan)
    outs = np.where(~in_shadow[:, None, :], phi_shadow, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (no IN or no OUT shadow): see below
        mu_in, mu_out = np.nanmedian(ins, 0), np.nanmedian(outs, 0)
        sd_in, sd_out = np.nanstd(ins, 0), np.nanstd(outs, 0)
        # the fixed-variance variant: one spread for all examples, pooled around each example's own mean
        pooled_in = np.sqrt(np.nanmean((ins - np.nanmean(ins, 0)) ** 2))
        pooled_out = np.sqrt(np.nanmean((outs - np.nanmean(outs, 0)) ** 2))
    shift = np.nanmean(mu_in - mu_out, axis=1, keepdims=True) if np.isfinite(mu_in - mu_out).any() else 0.0
    mu_in = np.where(np.isnan(mu_in), mu_out + shift, mu_in)
    mu_out = np.where(np.isnan(mu_out), mu_in - shift, mu_out)
    if fixed_variance:
        sd_in = np.full_like(mu_in, pooled_in + eps)
        sd_out = np.full_like(mu_out, pooled_out + eps)
    else:
        sd_in = np.where(np.isfinite(sd_in) & (sd_in > 0), sd_in, np.nanmedian(sd_in)) + eps
        sd_out = np.where(np.isfinite(sd_out) & (sd_out > 0), sd_out, np.nanmedian(sd_out)) + eps
    if online:
        llr = _norm_logpdf(phi_target, mu_in, sd_in) - _norm_logpdf(phi_target, mu_out, sd_out)
    else:
        from scipy.special import log_ndtr

        llr = log_ndtr((phi_target - mu_out) / sd_out)  # one-sided: how unusually high phi is for an OUT model
    return llr.mean(0)


def bound_check(fpr: np.ndarray, tpr: np.ndarray, pos: int, neg: int, epsilon: float, delta: float,
                levels: int = 25, alpha: float = 0.05) -> list[dict]:
    """Points of the ROC that lie above the (eps, delta)-DP bound beyond statistical doubt: at `levels` thresholds
    (log-spaced in FPR), a violation needs the lower confidence bound on TPR above e^eps x the upper bound on FPR
    + delta (Wilson intervals, Bonferroni over the levels). Returns the violating points (empty = consistent)."""
    from scipy.stats import norm

    from patchlab.stats import wilson_interval

    z = float(norm.isf(alpha / (2 * levels)))
    out = []
    targets = np.unique(np.clip(np.logspace(math.log10(max(1 / max(neg, 1), 1e-4)), 0, levels), 0, 1))
    for level in targets:
        ok = np.nonzero(fpr <= level)[0]
        if not len(ok):
            continue
        k = ok[-1]
        tp, fp = round(tpr[k] * pos), round(fpr[k] * neg)
        tpr_lo = wilson_interval(tp, pos, z)[0]
        fpr_hi = wilson_interval(fp, neg, z)[1]
        bound = float(dp_roc_bound(fpr_hi, epsilon, delta))
        if tpr_lo > bound + 1e-12:
            out.append({"fpr": float(fpr[k]), "tpr": float(tpr[k]), "tpr_lower": tpr_lo, "fpr_upper": fpr_hi,
                        "bound": bound})
    return out


@dataclass
class MIAResult:
    config: MIAConfig
    attacks: dict                       # name -> {"auc", "tpr_at_0.1%", "tpr_at_1%", "fpr", "tpr"}
    scores: dict                        # name -> (targets * pool,) scores
    members: np.ndarray                 # (targets * pool,) truth
    yeom: dict                          # Yeom's fixed threshold: tpr, fpr, advantage
    train_accuracy: float
    test_accuracy: float
    epsilon: float | None               # DP models: the largest epsilon among them
    bound_violations: dict = field(default_factory=dict)
    n: int = 0
    seconds: float = 0.0

    def summary(self, curve_points: int = 200) -> dict:
        out = {**self.config.to_dict(), "n": self.n, "seconds": self.seconds, "train_accuracy": self.train_accuracy,
               "test_accuracy": self.test_accuracy, "generalization_gap": self.train_accuracy - self.test_accuracy,
               "epsilon": self.epsilon, "delta": self.config.delta if self.epsilon is not None else None,
               "auc_bound": dp_auc_bound(self.epsilon, self.config.delta) if self.epsilon is not None else None,
               "yeom": self.yeom, "bound_violations": self.bound_violations, "attacks": {}}
        for name, a in self.attacks.items():
            idx = np.unique(np.linspace(0, len(a["fpr"]) - 1, curve_points).astype(int))
            out["attacks"][name] = {k: a[k] for k in ("auc", "tpr_at_0.1%", "tpr_at_1%")}
            out["attacks"][name]["curve"] = [{"fpr": float(a["fpr"][i]), "tpr": float(a["tpr"][i])} for i in idx]
        return out


def run_mia(pool_data: Digits, config: MIAConfig | None = None, *, test: Digits | None = None,
            out_dir: str | Path | None = None, progress: ProgressFn | None = None,
            stop: threading.Event | None = None, **overrides) -> MIAResult:
    """Train `shadows + 1` models on random halves of the first `pool` examples of `pool_data` (in parallel,
    resumable through out_dir) and score every model-example pair with every attack."""
    from patchlab.models.digits import accuracy

    cfg = MIAConfig.from_dict({**(config or MIAConfig()).to_dict(), **overrides})
    cfg.validate(len(pool_data))
    t0 = time.perf_counter()
    x, y = pool_data.images[:cfg.pool], pool_data.labels[:cfg.pool]
    n_models = cfg.shadows + 1
    keep = membership(n_models, cfg.pool, cfg.seed)
    model = {"kind": cfg.model, "size": int(x.shape[-1])}
    if cfg.model in ("cnn", "dpcnn", "mlp"):
        model["activation"] = cfg.activation
    jobs = [TrainJob(name=f"model-{i:03d}", indices=np.nonzero(keep[i])[0].tolist(),
                     model={**model, "seed": cfg.seed * 1009 + i}, trainer=cfg.trainer,
                     settings={**cfg.job_settings(), "seed": cfg.seed * 1009 + i}) for i in range(n_models)]
    models, infos = train_many(jobs, x, y, workers=cfg.workers, out_dir=out_dir, progress=progress, stop=stop)
    if stop is not None and stop.is_set():
        raise PatchlabError("stopped while training the models (finished ones are kept in out_dir)")
    phi, loss = zip(*(model_scores(m, x, y, cfg.augment) for m in models))
    phi, loss = np.stack(phi), np.stack(loss)  # (models, queries, pool), (models, pool)
    scores = {name: [] for name in ATTACKS}
    members, yeom_tp, yeom_fp = [], 0, 0
    for t in range(n_models):
        others = np.arange(n_models) != t
        for name, variant in ATTACKS.items():
            if not variant:
                scores[name].append(-loss[t])
            else:
                scores[name].append(lira_scores(phi[t], phi[others], keep[others], *variant))
        members.append(keep[t])
        tau = loss[t][keep[t]].mean() if keep[t].any() else 0.0  # Yeom: the mean training loss
        guess = loss[t] <= tau
        yeom_tp += int((guess & keep[t]).sum())
        yeom_fp += int((guess & ~keep[t]).sum())
    m = np.concatenate(members)
    attacks, flat = {}, {}
    for name, parts in scores.items():
        s = np.concatenate(parts)
        fpr, tpr, thr = roc(s, m)
        flat[name] = s
        attacks[name] = {"auc": auc(fpr, tpr), "tpr_at_0.1%": tpr_at(fpr, tpr, 0.001),
                         "tpr_at_1%": tpr_at(fpr, tpr, 0.01), "fpr": fpr, "tpr": tpr, "thresholds": thr}
    pos, neg = int(m.sum()), int((~m).sum())
    yeom = {"tpr": yeom_tp / pos, "fpr": yeom_fp / neg, "advantage": yeom_tp / pos - yeom_fp / neg}
    eps = max((i.get("epsilon") for i in infos if i.get("epsilon") is not None), default=None)
    violations = {}
    if eps is not None:
        for name, a in attacks.items():
            violations[name] = bound_check(a["fpr"], a["tpr"], pos, neg, eps, cfg.delta)
    train_acc = float(np.mean([accuracy(mod, x[torch.as_tensor(keep[i])], y[torch.as_tensor(keep[i])])
                               for i, mod in enumerate(models)]))
    test_acc = float(np.mean([accuracy(mod, test.images, test.labels) for mod in models])) if test is not None \
        else float(np.mean([accuracy(mod, x[torch.as_tensor(~keep[i])], y[torch.as_tensor(~keep[i])])
                            for i, mod in enumerate(models)]))
    return MIAResult(config=cfg, attacks=attacks, scores=flat, members=m, yeom=yeom, train_accuracy=train_acc,
                     test_accuracy=test_acc, epsilon=eps, bound_violations=violations, n=len(m),
                     seconds=time.perf_counter() - t0)
