"""Influence functions for a linear head on frozen features (Koh & Liang 2017), checked against leave-one-out.

    I_up,loss(z, z_test) = -grad L(z_test)^T H^-1 grad L(z)

computed through s_test = H^-1 grad L(z_test), once per test point. Three solvers for s_test:

- "exact": the dense Hessian and a Cholesky solve (heads up to `head.EXACT_LIMIT` parameters);
- "cg": conjugate gradients on exact Hessian-vector products (any size; what Koh & Liang used for Dogfish);
- "lissa": the stochastic Neumann-series estimator of Agarwal et al. (2016), minibatch Hessians, `scale` set from
  a power-iteration estimate of the largest eigenvalue, `damping`, `depth` x `repeats` recursions.

"auto" picks exact when the Hessian fits, else CG, and says which in `SolverInfo`.

Sign convention (the paper's): a positive influence means upweighting the training point raises the test loss
(it is *harmful* to that prediction); removing point i changes the test loss by about -I_i / n, which
`leave_one_out` measures by retraining with w_i = 0.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch

from patchlab.errors import PatchlabError
from patchlab.poisoning import head as H
from patchlab.progress import ProgressFn
from patchlab.registry import Registry

SOLVERS: Registry[str] = Registry("influence solver")
for _name, _title in (("auto", "exact when the Hessian fits, else conjugate gradients"),
                      ("exact", "dense Hessian, Cholesky"), ("cg", "conjugate gradients on Hessian-vector products"),
                      ("lissa", "LiSSA (Agarwal et al. 2017) stochastic series")):
    SOLVERS.register(_name, _title, title=_title)


@dataclass
class LissaConfig:
    depth: int = 5000
    repeats: int = 4
    batch: int = 64
    damping: float = 0.0
    scale: float | None = None  # None: 1.05 x the largest Hessian eigenvalue (power iteration)
    seed: int = 0


@dataclass
class SolverInfo:
    solver: str
    reason: str
    num_params: int
    seconds: float
    iterations: int = 0
    residual: float = 0.0  # ||H s - v|| / ||v|| (exact for every solver: one more Hessian-vector product)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def choose_solver(prob: H.Problem, solver: str = "auto") -> tuple[str, str]:
    solver = SOLVERS.resolve(solver)
    if solver != "auto":
        return solver, "asked for"
    if prob.num_params <= H.EXACT_LIMIT:
        return "exact", f"{prob.num_params} parameters <= {H.EXACT_LIMIT}: the dense Hessian fits"
    return "cg", f"{prob.num_params} parameters > {H.EXACT_LIMIT}: Hessian-vector products with conjugate gradients"


def largest_eigenvalue(theta: torch.Tensor, prob: H.Problem, iters: int = 30, seed: int = 0) -> float:
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(prob.shape, generator=gen, dtype=torch.float64)
    v /= v.norm()
    lam = 0.0
    for _ in range(iters):
        hv = H.hvp(theta, v, prob)
        lam = float((v * hv).sum())
        v = hv / hv.norm()
    return lam


def inverse_hvp(theta: torch.Tensor, prob: H.Problem, v: torch.Tensor, solver: str = "auto",
                lissa: LissaConfig | None = None, cg_tol: float = 1e-10, factor: H.Factor | None = None,
                progress: ProgressFn | None = None) -> tuple[torch.Tensor, SolverInfo]:
    """H^-1 v at theta (which should be the optimum of `prob`)."""
    name, reason = choose_solver(prob, solver)
    t0 = time.perf_counter()
    extra: dict = {}
    iterations = 0
    if name == "exact":
        if prob.num_params > 2 * H.EXACT_LIMIT:
            raise PatchlabError(f"solver 'exact' needs a dense Hessian of {prob.num_params} parameters; use cg")
        factor = factor or H.factorize(theta, prob)
        s = factor.solve(v)
    elif name == "cg":
        s, info = H.conjugate_gradient(lambda d: H.hvp(theta, d, prob), v, tol=cg_tol,
                                       max_iter=max(1000, 2 * prob.num_params))
        iterations = info.iterations
    else:
        cfg = lissa or LissaConfig()
        scale = cfg.scale or 1.05 * largest_eigenvalue(theta, prob, seed=cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        estimates = []
        total = cfg.repeats * cfg.depth
        for r in range(cfg.repeats):
            h = v.clone()
            for j in range(cfg.depth):
                rows = torch.randint(prob.n, (min(cfg.batch, prob.n),), generator=gen)
                h = v + (1 - cfg.damping) * h - H.hvp(theta, h, prob, rows) / scale
                if not torch.isfinite(h).all():
                    raise PatchlabError(f"LiSSA diverged at depth {j} (scale {scale:.3g} is too small)")
                if progress is not None and (j + 1) % 500 == 0:
                    progress(r * cfg.depth + j + 1, total, {"phase": "lissa"})
            estimates.append(h / scale)
        s = torch.stack(estimates).mean(0)
        iterations = total
        extra = {"scale": scale, "damping": cfg.damping, "depth": cfg.depth, "repeats": cfg.repeats,
                 "batch": cfg.batch}
    residual = float((H.hvp(theta, s, prob) - v).norm() / (v.norm() + 1e-300))
    return s, SolverInfo(name, reason, prob.num_params, time.perf_counter() - t0, iterations, residual, extra)


@dataclass
class Influence:
    """Influence of every training point on one test point's loss."""

    scores: torch.Tensor       # (n,) I_up,loss(z_i, z_test)
    test_loss: float
    s_test: torch.Tensor
    solver: SolverInfo

    @property
    def predicted_loo(self) -> torch.Tensor:
        """Predicted change of the test loss when point i is left out: -I_i / n."""
        return -self.scores / len(self.scores)

    def helpful(self, k: int) -> list[int]:
        """Training points whose upweighting lowers the test loss most (most negative influence)."""
        return torch.argsort(self.scores)[:k].tolist()

    def harmful(self, k: int) -> list[int]:
        return torch.argsort(self.scores, descending=True)[:k].tolist()


def test_gradient(theta: torch.Tensor, test_x: torch.Tensor, test_y: int) -> tuple[torch.Tensor, float]:
    x = H.with_bias(test_x.reshape(1, -1))
    y = torch.tensor([int(test_y)])
    return H.example_gradient(theta, x, y)[0], float(H.losses(theta, x, y)[0])


def influence(theta: torch.Tensor, prob: H.Problem, test_x: torch.Tensor, test_y: int, solver: str = "auto",
              **solver_kw) -> Influence:
    """I_up,loss of every training point of `prob` on the test point (features `test_x`, label `test_y`)."""
    g_test, loss = test_gradient(theta, test_x, test_y)
    s, info = inverse_hvp(theta, prob, g_test, solver, **solver_kw)
    r = H.residuals(theta, prob.x, prob.y)  # per-example gradient r_i (x) x_i, never materialised
    scores = -((prob.x @ s.T) * r).sum(1)
    return Influence(scores, loss, s, info)


def leave_one_out(theta: torch.Tensor, prob: H.Problem, test_x: torch.Tensor, test_y: int, indices: list[int],
                  factor: H.Factor | None = None, progress: ProgressFn | None = None) -> torch.Tensor:
    """Actual change of the test loss when each point in `indices` is left out (retrained to the optimum)."""
    xt = H.with_bias(test_x.reshape(1, -1))
    yt = torch.tensor([int(test_y)])
    base = float(H.losses(theta, xt, yt)[0])
    if factor is None and prob.num_params <= H.EXACT_LIMIT:
        factor = H.factorize(theta, prob)
    out = torch.empty(len(indices), dtype=torch.float64)
    for j, i in enumerate(indices):
        w = prob.weights().clone()
        w[i] = 0.0
        res = H.fit(prob.replace(w=w), init=theta, factor=factor, tol=1e-12)
        out[j] = float(H.losses(res.theta, xt, yt)[0]) - base
        if progress is not None:
            progress(j + 1, len(indices), {"phase": "leave-one-out"})
    return out


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a = a.double() - a.double().mean()
    b = b.double() - b.double().mean()
    den = float(a.norm() * b.norm())
    return float((a * b).sum()) / den if den > 0 else float("nan")


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra = torch.argsort(torch.argsort(a)).double()
    rb = torch.argsort(torch.argsort(b)).double()
    return pearson(ra, rb)


@dataclass
class LooCheck:
    solver: str
    pearson: float
    spearman: float
    n: int
    indices: list[int]
    predicted: list[float]
    actual: list[float]
    seconds: float

    def to_dict(self, points: bool = False) -> dict:
        d = asdict(self)
        if not points:
            for k in ("indices", "predicted", "actual"):
                d.pop(k)
        return d


def loo_indices(scores: torch.Tensor, count: int | None, seed: int = 0) -> list[int]:
    """All points (count None or >= n), else the count/2 most influential by |I| plus count/2 drawn at random."""
    n = len(scores)
    if count is None or count >= n:
        return list(range(n))
    top = torch.argsort(scores.abs(), descending=True)[:math.ceil(count / 2)].tolist()
    rest = [i for i in torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist() if i not in set(top)]
    return sorted(top + rest[:count - len(top)])


def check_against_loo(theta: torch.Tensor, prob: H.Problem, test_x: torch.Tensor, test_y: int,
                      solvers: tuple[str, ...] = ("exact",), count: int | None = None, seed: int = 0,
                      lissa: LissaConfig | None = None, progress: ProgressFn | None = None
                      ) -> tuple[list[LooCheck], dict[str, Influence]]:
    """Influence from each solver against leave-one-out retraining on the same points (Koh & Liang Fig. 2)."""
    infl = {s: influence(theta, prob, test_x, test_y, s, **({"lissa": lissa} if s == "lissa" else {}))
            for s in solvers}
    first = next(iter(infl.values()))
    idx = loo_indices(first.scores, count, seed)
    t0 = time.perf_counter()
    actual = leave_one_out(theta, prob, test_x, test_y, idx, progress=progress)
    loo_s = time.perf_counter() - t0
    checks = []
    for name, inf in infl.items():
        pred = inf.predicted_loo[idx]
        checks.append(LooCheck(inf.solver.solver, pearson(pred, actual), spearman(pred, actual), len(idx), idx,
                               pred.tolist(), actual.tolist(), loo_s))
    return checks, infl
