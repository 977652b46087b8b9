"""The privacy analysis of PATE's aggregators, data-independent and data-dependent, as RDP curves.

Papernot et al. 2018 ("Scalable Private Learning with PATE", arXiv:1802.08908):
- GNMax (argmax of votes + N(0, sigma^2)): data-independent RDP alpha / sigma^2 (Prop. 8; one teacher moves two
  counts by one, L2 sensitivity sqrt 2);
- its data-dependent bound (Thm 6 with Prop. 7 and the orders of Prop. 10): when the plurality wins by a wide
  margin, q = Pr[output != plurality] is tiny and the RDP of the query is far below alpha / sigma^2;
- Confident-GNMax's threshold step (is max vote + N(0, sigma1^2) >= T?): sensitivity 1, so alpha / (2 sigma1^2)
  data-independently, and the same Thm 6 with q = min(Pr[answer], Pr[no answer]).
Papernot et al. 2016 (arXiv:1610.05755) for LNMax (Laplace noise of scale 1/gamma on the counts): a (2 gamma)-DP
query, whose moments bound (Thm 2/3, Lemma 4) is written here in RDP form (alpha = l + 1).

The data-dependent numbers depend on the private votes themselves: publishing them as they are is not private.
Papernot et al. 2018 release them through smooth sensitivity (Sec. 4.3), which this module does not implement;
`analyse` reports both bounds so the difference is visible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from patchlab.errors import PatchlabError
from patchlab.privacy.rdp import eps_from_rdp

# The orders the 2018 analysis scans: 2 .. 100 in steps of 0.5, then up to 500 on a log grid.
PATE_ORDERS = np.concatenate([np.arange(2, 100.5, 0.5), np.logspace(2, math.log10(500), 100)[1:]])


def _log1mexp(x: float) -> float:
    """log(1 - e^x) for x <= 0."""
    if x > 0:
        raise PatchlabError(f"_log1mexp needs x <= 0, got {x}")
    if x == 0:
        return -math.inf
    return math.log(-math.expm1(x)) if x > -0.693 else math.log1p(-math.exp(x))


def _check_counts(counts) -> np.ndarray:
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1 or len(c) < 2 or np.any(c < 0):
        raise PatchlabError("vote counts must be a 1-D array of >= 2 non-negative numbers")
    return c


# -- GNMax ---------------------------------------------------------------------------------------------------------
def logq_gnmax(counts, sigma: float) -> float:
    """log of an upper bound on Pr[GNMax's output != the plurality class] (Prop. 7, a union bound):
    sum over j != i* of Pr[N(0, 2 sigma^2) > n_i* - n_j], capped at 1 - 1/C."""
    c = _check_counts(counts)
    top = int(np.argmax(c))
    gaps = np.delete(c[top] - c, top)
    logq = float(special.logsumexp(special.log_ndtr(-gaps / (math.sqrt(2) * sigma))))
    return min(logq, math.log(1 - 1 / len(c)))


def rdp_gnmax_independent(sigma: float, orders=PATE_ORDERS) -> np.ndarray:
    if sigma <= 0:
        raise PatchlabError(f"sigma must be > 0, got {sigma}")
    return np.asarray(orders, dtype=np.float64) / sigma ** 2


def rdp_gnmax_dependent(logq: float, sigma: float, orders=PATE_ORDERS) -> np.ndarray:
    """Thm 6 of Papernot et al. 2018 for a Gaussian noisy max with noise sigma, given log q >= log Pr[output !=
    plurality]; never above the data-independent alpha / sigma^2 (the min of the two is returned).

    Thm 6: if M is (mu1, eps1)- and (mu2, eps2)-RDP and q <= e^((mu2-1) eps2) / (mu1/(mu1-1) * mu2/(mu2-1))^mu2,
    then for alpha <= mu1 its RDP is at most
        1/(alpha-1) log((1-q) A^(alpha-1) + q B^(alpha-1)),
        A = (1-q) / (1 - (q e^eps2)^((mu2-1)/mu2)),  B = e^eps1 / q^(1/(mu1-1)).
    The orders follow Prop. 10: mu2 = sigma sqrt(log 1/q), mu1 = mu2 + 1, eps_i = mu_i / sigma^2."""
    orders = np.atleast_1d(np.asarray(orders, dtype=np.float64))
    if logq > 0 or sigma <= 0 or np.any(orders <= 1):
        raise PatchlabError("rdp_gnmax_dependent: need log q <= 0, sigma > 0 and orders > 1")
    base = orders / sigma ** 2
    if logq == -math.inf:
        return np.zeros_like(orders)  # the output is fixed: no privacy cost
    var = sigma ** 2
    mu2 = sigma * math.sqrt(-logq)
    mu1 = mu2 + 1
    eps1, eps2 = mu1 / var, mu2 / var
    if mu2 <= 1 or -logq <= eps2:  # q e^eps2 must stay below 1
        return base
    # the condition on q, in logs
    if logq > (mu2 - 1) * eps2 - mu2 * (math.log(mu1 / (mu1 - 1)) + math.log(mu2 / (mu2 - 1))):
        return base
    ok = orders < mu1
    log1q = _log1mexp(logq)
    log_a = log1q - _log1mexp((logq + eps2) * (1 - 1 / mu2))
    log_b = eps1 - logq / (mu1 - 1)
    a1 = orders - 1
    log_s = np.logaddexp(log1q + a1 * log_a, logq + a1 * log_b)
    dep = log_s / a1
    return np.where(ok, np.minimum(dep, base), base)


# -- the threshold step of Confident-GNMax -------------------------------------------------------------------------
def logpr_answered(counts, threshold: float, sigma1: float) -> float:
    """log Pr[max_j n_j + N(0, sigma1^2) >= threshold]."""
    c = _check_counts(counts)
    return float(special.log_ndtr((c.max() - threshold) / sigma1))


def rdp_threshold_independent(sigma1: float, orders=PATE_ORDERS) -> np.ndarray:
    """The max vote has sensitivity 1 (not GNMax's sqrt 2): alpha / (2 sigma1^2)."""
    return rdp_gnmax_independent(math.sqrt(2) * sigma1, orders)


def rdp_threshold_dependent(log_pr_answer: float, sigma1: float, orders=PATE_ORDERS) -> np.ndarray:
    """Thm 6 applied to the threshold step's two outcomes, with q the smaller of Pr[answer], Pr[no answer]."""
    logq = min(log_pr_answer, _log1mexp(min(log_pr_answer, 0.0)))
    return rdp_gnmax_dependent(logq, math.sqrt(2) * sigma1, orders)


# -- LNMax (Papernot et al. 2016) ----------------------------------------------------------------------------------
def logq_lnmax(counts, gamma: float) -> float:
    """log of the 2016 paper's bound on Pr[LNMax's output != plurality] (Lemma 4 and a union bound): each rival
    j beats the winner with probability at most (2 + gamma d) / (4 exp(gamma d)), d the vote gap."""
    c = _check_counts(counts)
    top = int(np.argmax(c))
    d = gamma * np.delete(c[top] - c, top)
    logq = float(special.logsumexp(np.log(2 + d) - math.log(4) - d))
    return min(logq, math.log(1 - 1 / len(c)))


def rdp_pure_dp(logq: float, eps: float, orders=PATE_ORDERS) -> np.ndarray:
    """RDP of an eps-DP mechanism whose non-plurality outcome has probability <= q (Thm 3 of the 2016 paper with
    l = alpha - 1), never above the data-independent min(eps, alpha eps^2 / 2) (Thm 2 of the 2016 paper)."""
    orders = np.atleast_1d(np.asarray(orders, dtype=np.float64))
    base = np.minimum(0.5 * eps * eps * orders, eps)
    q = math.exp(logq)
    if q >= 1 / (math.exp(eps) + 1):  # outside the range where Thm 3 holds
        return base
    l1 = orders - 1
    log1q = math.log1p(-q)
    log_t = np.logaddexp(log1q + l1 * (log1q - _log1mexp(eps + logq)), logq + eps * l1)
    return np.minimum(base, log_t / l1)


def rdp_lnmax_independent(gamma: float, orders=PATE_ORDERS) -> np.ndarray:
    return np.minimum(0.5 * (2 * gamma) ** 2 * np.asarray(orders, dtype=np.float64), 2 * gamma)


# -- a whole run ---------------------------------------------------------------------------------------------------
@dataclass
class PateAnalysis:
    orders: np.ndarray
    rdp_dependent: np.ndarray        # (queries, orders): the cost each query adds
    rdp_independent: np.ndarray      # (queries, orders)
    answered: np.ndarray             # (queries,) bool
    delta: float

    def epsilon(self, dependent: bool = True, conversion: str = "tight", upto: int | None = None) -> float:
        rdp = (self.rdp_dependent if dependent else self.rdp_independent)[:upto].sum(0)
        return eps_from_rdp(self.orders, rdp, self.delta, conversion)[0]

    def order(self, dependent: bool = True, conversion: str = "tight") -> float:
        rdp = (self.rdp_dependent if dependent else self.rdp_independent).sum(0)
        return eps_from_rdp(self.orders, rdp, self.delta, conversion)[1]

    def curve(self, dependent: bool = True, conversion: str = "tight", points: int = 50) -> list[tuple[int, float]]:
        """(queries so far, epsilon) at up to `points` evenly spaced query counts."""
        q = len(self.answered)
        stops = sorted({int(round(v)) for v in np.linspace(1, q, min(points, q))}) if q else []
        cum = np.cumsum(self.rdp_dependent if dependent else self.rdp_independent, axis=0)
        return [(k, eps_from_rdp(self.orders, cum[k - 1], self.delta, conversion)[0]) for k in stops]

    def per_query(self, conversion: str = "tight") -> np.ndarray:
        """Each query's data-dependent RDP at the order that is optimal for the whole run (how much of the total
        it accounts for)."""
        a = self.order(True, conversion)
        i = int(np.argmin(np.abs(self.orders - a)))
        return self.rdp_dependent[:, i]


def analyse(counts, aggregator: str, delta: float, *, sigma: float | None = None, gamma: float | None = None,
            threshold: float | None = None, sigma1: float | None = None, answered=None,
            orders=PATE_ORDERS) -> PateAnalysis:
    """The RDP each query of a run costs. `counts` is (queries, classes). For "confident", `answered` says which
    queries passed the noisy threshold (the realised outcome; only those pay for the GNMax step)."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2:
        raise PatchlabError("counts must be (queries, classes)")
    orders = np.asarray(orders, dtype=np.float64)
    nq = len(counts)
    dep = np.zeros((nq, len(orders)))
    ind = np.zeros((nq, len(orders)))
    ans = np.ones(nq, dtype=bool) if answered is None else np.asarray(answered, dtype=bool)
    if aggregator == "lnmax":
        if gamma is None:
            raise PatchlabError("lnmax needs gamma=")
        base = rdp_lnmax_independent(gamma, orders)
        for i, c in enumerate(counts):
            ind[i] = base
            dep[i] = rdp_pure_dp(logq_lnmax(c, gamma), 2 * gamma, orders)
    elif aggregator in ("gnmax", "confident"):
        if sigma is None:
            raise PatchlabError(f"{aggregator} needs sigma=")
        base = rdp_gnmax_independent(sigma, orders)
        if aggregator == "confident":
            if threshold is None or sigma1 is None:
                raise PatchlabError("confident needs threshold= and sigma1=")
            tbase = rdp_threshold_independent(sigma1, orders)
        for i, c in enumerate(counts):
            if aggregator == "confident":
                ind[i] = tbase
                dep[i] = rdp_threshold_dependent(logpr_answered(c, threshold, sigma1), sigma1, orders)
            if ans[i]:
                ind[i] += base
                dep[i] += rdp_gnmax_dependent(logq_gnmax(c, sigma), sigma, orders)
    else:
        raise PatchlabError(f"unknown aggregator '{aggregator}' (choose from lnmax, gnmax, confident)")
    return PateAnalysis(orders, dep, ind, ans, delta)
