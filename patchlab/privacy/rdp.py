"""Rényi-DP arithmetic written here (not imported from Opacus), so that it can check Opacus and serve PATE.

- `sampled_gaussian_rdp(q, sigma, orders)`: the subsampled Gaussian mechanism under Poisson sampling
  (Mironov, Talwar & Zhang 2019, arXiv:1908.10530, Sec. 3.3), integer and fractional orders;
- `gaussian_rdp(sigma, orders, sensitivity)`: the plain Gaussian mechanism, alpha * s^2 / (2 sigma^2);
- `eps_from_rdp(orders, rdp, delta)`: the (epsilon, delta) a RDP curve implies, with the tight conversion of
  Balle et al. 2020 (Thm 21; what Opacus uses) or the classic one, rdp + log(1/delta)/(alpha - 1) (Mironov 2017;
  what the PATE papers use);
- `DEFAULT_ORDERS`: Opacus's grid of orders, so that the two give the same number for the same settings.

All arithmetic is in log space; numbers that overflow become +inf (no privacy), never an exception.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from patchlab.errors import PatchlabError

# Opacus 1.x's default orders: 1.1 .. 10.9 in steps of 0.1, then 12 .. 63.
DEFAULT_ORDERS: tuple[float, ...] = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))


def _log_a_integer(q: float, sigma: float, alpha: int) -> float:
    """log A_alpha = log sum_k C(alpha, k) (1-q)^(alpha-k) q^k exp((k^2 - k) / (2 sigma^2))."""
    k = np.arange(alpha + 1, dtype=np.float64)
    log_binom = special.gammaln(alpha + 1) - special.gammaln(k + 1) - special.gammaln(alpha - k + 1)
    terms = log_binom + k * math.log(q) + (alpha - k) * math.log1p(-q) + (k * k - k) / (2 * sigma * sigma)
    return float(special.logsumexp(terms))


def _log_a_fractional(q: float, sigma: float, alpha: float, tol: float = -30.0) -> float:
    """The fractional-order series of Mironov et al. 2019 (Sec. 3.3): the integral split at
    z0 = sigma^2 log(1/q - 1) + 1/2, each half a binomial series with generalised (signed) coefficients,
    summed in one vectorised pass over enough terms that the last ones are below e^tol."""
    z0 = sigma * sigma * math.log(1 / q - 1) + 0.5
    n = 64
    while True:
        i = np.arange(n, dtype=np.float64)
        coef = special.binom(alpha, i)
        i, coef = i[coef != 0], coef[coef != 0]
        j = alpha - i
        log_coef = np.log(np.abs(coef))
        # log(erfc(x) / 2) = log Phi(-x sqrt 2), accurate far in the tail
        s0 = (log_coef + i * math.log(q) + j * math.log1p(-q) + (i * i - i) / (2 * sigma * sigma)
              + special.log_ndtr(-(i - z0) / sigma))
        s1 = (log_coef + j * math.log(q) + i * math.log1p(-q) + (j * j - j) / (2 * sigma * sigma)
              + special.log_ndtr(-(z0 - j) / sigma))
        if max(s0[-1], s1[-1]) < tol or n >= 16_384:
            break
        n *= 2
    sign = np.sign(coef)
    total, total_sign = special.logsumexp(np.r_[s0, s1], b=np.r_[sign, sign], return_sign=True)
    return float(total) if total_sign > 0 else -math.inf


def sampled_gaussian_rdp(q: float, sigma: float, orders=DEFAULT_ORDERS, steps: int = 1) -> np.ndarray:
    """RDP at each order of `steps` compositions of the Poisson-subsampled Gaussian mechanism with sampling
    rate `q` and noise multiplier `sigma` (noise std / clipping norm)."""
    if not 0 <= q <= 1:
        raise PatchlabError(f"sampled_gaussian_rdp: sampling rate q must lie in [0, 1], got {q}")
    if sigma < 0:
        raise PatchlabError(f"sampled_gaussian_rdp: sigma must be >= 0, got {sigma}")
    out = []
    for a in np.atleast_1d(np.asarray(orders, dtype=np.float64)):
        if a <= 1:
            raise PatchlabError(f"sampled_gaussian_rdp: orders must be > 1, got {a}")
        if q == 0:
            out.append(0.0)
        elif sigma == 0:
            out.append(math.inf)
        elif q == 1:
            out.append(a / (2 * sigma * sigma))
        else:
            log_a = _log_a_integer(q, sigma, int(a)) if float(a).is_integer() else _log_a_fractional(q, sigma, a)
            out.append(log_a / (a - 1))
    return np.asarray(out) * steps


def gaussian_rdp(sigma: float, orders=DEFAULT_ORDERS, sensitivity: float = 1.0) -> np.ndarray:
    """RDP of adding N(0, sigma^2) to a function of L2 sensitivity `sensitivity`: alpha s^2 / (2 sigma^2)."""
    if sigma <= 0:
        raise PatchlabError(f"gaussian_rdp: sigma must be > 0, got {sigma}")
    return np.asarray(orders, dtype=np.float64) * sensitivity ** 2 / (2 * sigma * sigma)


def eps_from_rdp(orders, rdp, delta: float, conversion: str = "tight") -> tuple[float, float]:
    """(epsilon, best order) for a composed RDP curve at `delta`.

    conversion="tight": Balle et al. 2020, Thm 21 (eps = rdp + log((a-1)/a) - (log delta + log a)/(a-1));
    conversion="classic": Mironov 2017, Prop. 3 (eps = rdp + log(1/delta)/(a-1)), as in the PATE papers.
    """
    if not 0 < delta < 1:
        raise PatchlabError(f"delta must lie in (0, 1), got {delta}")
    a = np.asarray(orders, dtype=np.float64)
    r = np.asarray(rdp, dtype=np.float64)
    if a.shape != r.shape:
        raise PatchlabError("eps_from_rdp: orders and rdp differ in length")
    if conversion == "tight":
        eps = r - (math.log(delta) + np.log(a)) / (a - 1) + np.log((a - 1) / a)
    elif conversion == "classic":
        eps = r - math.log(delta) / (a - 1)
    else:
        raise PatchlabError(f"unknown conversion '{conversion}' (choose from tight, classic)")
    eps = np.where(np.isnan(eps), np.inf, eps)
    i = int(np.argmin(eps))
    return max(0.0, float(eps[i])), float(a[i])


def dpsgd_epsilon(sigma: float, q: float, steps: int, delta: float, orders=DEFAULT_ORDERS) -> float:
    """epsilon of `steps` DP-SGD steps (Poisson rate q, noise multiplier sigma) by our own RDP accountant."""
    return eps_from_rdp(orders, sampled_gaussian_rdp(q, sigma, orders, steps), delta)[0]


def dp_roc_bound(fpr, epsilon: float, delta: float) -> np.ndarray:
    """The largest true-positive rate any membership test can reach at each false-positive rate against an
    (epsilon, delta)-DP training algorithm: min(e^eps FPR + delta, 1 - e^-eps (1 - delta - FPR), 1)
    (Kairouz et al. 2015; the hypothesis-testing view of DP)."""
    fpr = np.clip(np.asarray(fpr, dtype=np.float64), 0, 1)
    if math.isinf(epsilon):
        return np.ones_like(fpr)
    e = math.exp(min(epsilon, 700.0))
    return np.clip(np.minimum(e * fpr + delta, 1 - (1 - delta - fpr) / e), 0, 1)


def dp_auc_bound(epsilon: float, delta: float, points: int = 200_001) -> float:
    """Area under `dp_roc_bound`: the highest AUC a membership test can have against an (eps, delta)-DP model."""
    x = np.linspace(0, 1, points)
    return float(np.trapezoid(dp_roc_bound(x, epsilon, delta), x))
