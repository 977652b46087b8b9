"""A linear head on frozen features, trained to its exact optimum: the convex model influence functions need.

Multinomial logistic regression with class 0 as the reference (its logit is fixed at 0), so two classes give exactly
binary logistic regression (Koh & Liang's Dogfish model) and C classes have (C - 1)(D + 1) parameters. The objective
is

    F(theta) = (1/n) sum_i w_i CE(z_i, theta) + (l2 / 2) ||theta||^2,

with the normalisation fixed at n = len(y), so setting one weight w_i to 0 is exactly "leave z_i out" in the
influence function's sense (upweighting by -1/n). Everything is float64 and in closed form: per-example gradients
are r_i (x) x_i with r_i = p_i - e_{y_i} over the free classes; the Hessian is (1/n) sum_i w_i A_i (x) x_i x_i^T + l2 I
with A_i = diag(p_i) - p_i p_i^T, so Hessian-vector products cost one pass over the data (what Pearlmutter's trick
gives for this model).

`fit` is Newton's method: the dense Hessian and a Cholesky solve when the head has at most `EXACT_LIMIT` parameters,
conjugate gradients on Hessian-vector products above that. A refit after a small change (one point left out, a
poison moved) reuses the previous factorisation as long as it keeps converging fast.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from patchlab.errors import PatchlabError

EXACT_LIMIT = 5000  # parameters; a dense float64 Hessian of this size is 200 MB


def with_bias(features: torch.Tensor) -> torch.Tensor:
    x = features.to(torch.float64)
    return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], 1)


@dataclass
class Problem:
    """Training data of a head: features with a bias column, integer labels, per-example weights, L2 strength."""

    x: torch.Tensor          # (n, D + 1) float64
    y: torch.Tensor          # (n,) int64 in [0, C)
    num_classes: int
    l2: float
    w: torch.Tensor | None = None  # (n,) float64; None = all ones

    @classmethod
    def from_features(cls, features: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None,
                      l2: float = 1e-3) -> "Problem":
        labels = labels.to(torch.int64).cpu()
        c = int(num_classes) if num_classes is not None else int(labels.max()) + 1
        if c < 2:
            raise PatchlabError("a head needs at least two classes")
        if not l2 > 0:
            raise PatchlabError(f"l2 must be > 0 (it makes the optimum unique), got {l2}")
        return cls(with_bias(features.cpu()), labels, c, float(l2))

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def shape(self) -> tuple[int, int]:
        return self.num_classes - 1, self.x.shape[1]

    @property
    def num_params(self) -> int:
        a, b = self.shape
        return a * b

    def weights(self) -> torch.Tensor:
        return torch.ones(self.n, dtype=torch.float64) if self.w is None else self.w

    def replace(self, x: torch.Tensor | None = None, w: torch.Tensor | None = None) -> "Problem":
        return Problem(self.x if x is None else x, self.y, self.num_classes, self.l2, self.w if w is None else w)


# --- closed forms -------------------------------------------------------------------------------------------------
def logits(theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(n, C) logits with the reference class's 0 in front."""
    free = x @ theta.T
    return torch.cat([torch.zeros(len(x), 1, dtype=free.dtype, device=free.device), free], 1)


def probabilities(theta: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Class probabilities for raw features (no bias column)."""
    return logits(theta, with_bias(features)).softmax(1)


def losses(theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy."""
    return torch.nn.functional.cross_entropy(logits(theta, x), y, reduction="none")


def residuals(theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """r_i = p_i - e_{y_i} over the free classes, (n, C - 1); the per-example gradient is r_i (x) x_i."""
    p = logits(theta, x).softmax(1)
    r = p[:, 1:].clone()
    free = y > 0
    r[free, y[free] - 1] -= 1
    return r


def objective(theta: torch.Tensor, prob: Problem) -> float:
    w = prob.weights()
    return float((w * losses(theta, prob.x, prob.y)).sum() / prob.n + 0.5 * prob.l2 * theta.pow(2).sum())


def gradient(theta: torch.Tensor, prob: Problem) -> torch.Tensor:
    r = residuals(theta, prob.x, prob.y) * prob.weights()[:, None]
    return r.T @ prob.x / prob.n + prob.l2 * theta


def example_gradient(theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradients of the unregularised loss of each example, (m, C - 1, D + 1). `x` has the bias column."""
    return residuals(theta, x, y)[:, :, None] * x[:, None, :]


def hvp(theta: torch.Tensor, v: torch.Tensor, prob: Problem, rows: torch.Tensor | None = None) -> torch.Tensor:
    """H v for v shaped like theta; with `rows`, the Hessian estimate of that minibatch (LiSSA)."""
    x, w = prob.x, prob.weights()
    scale = prob.n
    if rows is not None:
        x, w, scale = x[rows], w[rows], len(rows)
    p = logits(theta, x).softmax(1)[:, 1:]
    z = x @ v.T
    az = p * z - p * (p * z).sum(1, keepdim=True)
    return (az * w[:, None]).T @ x / scale + prob.l2 * v


def hessian(theta: torch.Tensor, prob: Problem) -> torch.Tensor:
    """The dense (p, p) Hessian, parameters ordered like theta.flatten()."""
    k, d = prob.shape
    if prob.num_params > EXACT_LIMIT * 2:
        raise PatchlabError(f"a dense Hessian of {prob.num_params} parameters is too large; use an iterative solver")
    x, w = prob.x, prob.weights()
    p = logits(theta, x).softmax(1)[:, 1:]
    h = torch.zeros(k, d, k, d, dtype=torch.float64)
    for a in range(k):
        for b in range(a, k):
            coef = p[:, a] * (float(a == b) - p[:, b]) * w / prob.n
            block = (x * coef[:, None]).T @ x
            h[a, :, b, :] = block
            if b != a:
                h[b, :, a, :] = block.T
    h = h.reshape(k * d, k * d)
    h.diagonal().add_(prob.l2)
    return h


# --- solvers ----------------------------------------------------------------------------------------------------
@dataclass
class CGInfo:
    iterations: int
    residual: float  # ||H s - v|| / ||v||


def conjugate_gradient(apply, v: torch.Tensor, tol: float = 1e-10, max_iter: int = 1000,
                       precond=None) -> tuple[torch.Tensor, CGInfo]:
    """Solve A s = v for a symmetric positive definite operator `apply` (optionally preconditioned)."""
    s = torch.zeros_like(v)
    r = v.clone()
    z = precond(r) if precond else r
    d = z.clone()
    rz = float((r * z).sum())
    vnorm = float(v.norm()) or 1.0
    it = 0
    for it in range(1, max_iter + 1):
        ad = apply(d)
        alpha = rz / float((d * ad).sum())
        s += alpha * d
        r -= alpha * ad
        if float(r.norm()) <= tol * vnorm:
            break
        z = precond(r) if precond else r
        rz_new = float((r * z).sum())
        d = z + (rz_new / rz) * d
        rz = rz_new
    return s, CGInfo(it, float(r.norm()) / vnorm)


@dataclass
class Factor:
    """A Cholesky factor of the Hessian at some theta, reused by later refits as a fixed Newton matrix."""

    chol: torch.Tensor
    shape: tuple[int, int]

    def solve(self, g: torch.Tensor) -> torch.Tensor:
        return torch.cholesky_solve(g.reshape(-1, 1), self.chol).reshape(self.shape)


def factorize(theta: torch.Tensor, prob: Problem) -> Factor:
    chol, info = torch.linalg.cholesky_ex(hessian(theta, prob))
    if int(info) != 0:
        raise PatchlabError("the head's Hessian is not positive definite (raise l2)")
    return Factor(chol, prob.shape)


@dataclass
class FitResult:
    theta: torch.Tensor
    iterations: int
    grad_norm: float
    seconds: float
    method: str
    factor: Factor | None = None  # Hessian factor at (or near) the optimum, exact method only
    history: list[float] = field(default_factory=list)


def fit(prob: Problem, init: torch.Tensor | None = None, tol: float = 1e-9, max_iter: int = 100,
        factor: Factor | None = None, method: str = "auto") -> FitResult:
    """Minimise F to ||grad F||_inf <= tol by (damped) Newton steps.

    `method`: "exact" (dense Hessian, Cholesky), "cg" (Newton-CG on Hessian-vector products) or "auto" (exact up to
    EXACT_LIMIT parameters). With a `factor` from an earlier fit, steps use that fixed matrix and the Hessian is
    refactorised only when the gradient stops shrinking fast (a small change to the data needs one or two cheap
    steps)."""
    t0 = time.perf_counter()
    if method == "auto":
        method = "exact" if prob.num_params <= EXACT_LIMIT else "cg"
    if method not in ("exact", "cg"):
        raise PatchlabError(f"unknown head fitting method '{method}' (exact, cg)")
    theta = torch.zeros(prob.shape, dtype=torch.float64) if init is None else init.detach().clone().to(torch.float64)
    f = objective(theta, prob)
    g = gradient(theta, prob)
    history = [float(g.abs().max())]
    fresh = False
    it = 0
    for it in range(1, max_iter + 1):
        if history[-1] <= tol:
            it -= 1
            break
        if method == "exact":
            if factor is None:
                factor, fresh = factorize(theta, prob), True
            step = factor.solve(g)
        else:
            step, _ = conjugate_gradient(lambda v: hvp(theta, v, prob), g, tol=1e-6, max_iter=500)
        # backtracking line search on F (Newton steps are full steps near the optimum)
        t = 1.0
        while True:
            cand = theta - t * step
            fc = objective(cand, prob)
            if fc <= f + 1e-12 * abs(f) or t < 1e-8:
                break
            t *= 0.5
        theta, f = cand, fc
        g = gradient(theta, prob)
        history.append(float(g.abs().max()))
        if method == "exact" and not fresh and (t < 1 or history[-1] > 0.25 * history[-2]):
            factor = None  # the reused matrix is too far from the current Hessian: refactorise next step
        fresh = False
    else:
        if history[-1] > tol:
            raise PatchlabError(f"head training did not converge in {max_iter} Newton steps "
                                f"(|grad| = {history[-1]:.2e}); raise l2")
    return FitResult(theta, it, history[-1], time.perf_counter() - t0, method,
                     factor if method == "exact" else None, history)


def accuracy(theta: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> float:
    if len(labels) == 0:
        return 0.0
    return float((probabilities(theta, features).argmax(1) == labels.cpu()).double().mean())
