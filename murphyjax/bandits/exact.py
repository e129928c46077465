"""Exact error of keep-flagged + majority, and the draws it needs (Theorems 2-3 without Hoeffding).

A flagger with true-positive rate tau and false-positive rate phi keeps a draw with probability
q = alpha tau + (1 - alpha) phi; given that it is kept, its label is right with probability
p = 1/2 + eps alpha tau / q (``theory.diluted_vote_accuracy``: the false positives' symmetric
labels dilute the vote, note 9.6). Draws are i.i.d. and, given hardness, flags are independent of
labels, so after n draws the number of kept labels is K ~ Bin(n, q) and

    P(w_hat != w) = sum_k Bin(k; n, q) majority_error(k, p),

with majority_error(k, p) = P(Bin(k, p) < k/2) + P(Bin(k, p) = k/2) / 2 (fair tie-break). This is
exact for the oracle (tau, phi) = (1, 0) (Theorem 2's procedure counted in draws), for the
oracle-free query-everything majority (tau = phi = 1, p = 1/2 + alpha eps) and for any x-only
flagger (its flags depend on x only, hence are independent of the label given hardness).
The sum is truncated to mean +- (10 sd + 20) of K, which drops less than 2e-23 of the mass (measured
for n <= 1e9 and q in [1e-9, 1 - 1e-9], largest at q = 1/2 and large n, where it tends to the normal
2 Phi(-10) = 1.5e-23; checked against 40-digit mpmath tail sums; the + 20 covers the Poisson-like
tails when n q or n (1 - q) is small).

Fast exact majority error over a window of consecutive k (``majority_error_window``): ties make
majority_error(2m) = majority_error(2m - 1), and for odd k the error obeys
    e(2j + 3) - e(2j + 1) = -(2p - 1) C(2j + 1, j) (p (1 - p))^(j + 1),
so one regularised incomplete beta at the start of the window plus a cumulative sum gives the
whole window (a bisection over n on millions of draws would otherwise call betainc 10^5 times
per step).
These are float64 NumPy/SciPy tools on concrete values (not for use under jit): a bisection over
n evaluates arrays of changing width, which eager JAX would recompile at every step.
"""

from __future__ import annotations

import numpy as np
from scipy.special import betainc

from murphyjax import theory
from murphyjax.theory import numerics as N
from murphyjax.theory import validate as V


def _pmf(k, n, p):
    """Bin(n, p) pmf at integers k in [0, n], p in [0, 1] (Loader's form: relative error ~1e-15 at any n)."""
    k, n, p = np.broadcast_arrays(*(np.asarray(x, np.float64) for x in (k, n, p)))
    interior = (p > 0) & (p < 1)
    out = N.binom_pmf(k, n, np.where(interior, p, 0.5), xp=np)
    return np.where(interior, out, np.where(p == 0, k == 0, k == n).astype(np.float64))


def majority_error_k(k, p):
    """Exact majority error over k votes each right w.p. p (k may be a float array of integers).

    P(S <= m) = I_{1-p}(k - m, m + 1) with m = ceil(k/2) - 1 the largest integer below k/2.
    The CDF is SciPy's (Boost) betainc and the tie term Loader's pmf (relative error ~1e-15 at
    any k). Relative error below 1e-12 for k <= 1e6 and 3e-12 at k = 1e8 (measured 5e-13 and
    2.7e-12 against 40-digit mpmath sums of the binomial terms; ``theory.majority_error`` is
    1.3e-13 and 1.1e-12 there).
    """
    k = np.asarray(k, np.float64)
    p = np.asarray(p, np.float64)
    m = np.ceil(k / 2) - 1
    a = np.maximum(k - m, 1.0)
    b = np.maximum(m + 1, 1.0)
    cdf = np.where(m >= 0, betainc(a, b, 1.0 - p), 0.0)
    even = np.mod(k, 2) == 0
    tie = np.where(even, _pmf(np.where(even, k / 2, 0.0), k, p), 0.0)
    return np.where(k == 0, 0.5, cdf + 0.5 * tie)


def majority_error_window(k_lo, width: int, p):
    """majority_error(k, p) for k = k_lo, ..., k_lo + width - 1 (batched over k_lo and p).

    Returns (..., width). Exact (the recurrence in the module docstring), the increments summed
    towards the smaller errors so that only positive terms are added: relative error below 1e-12
    over windows of 10^5 terms, also where the error falls by many orders of magnitude across
    the window (checked against ``theory.majority_error``).
    """
    k_lo = np.asarray(k_lo, np.float64)
    p = np.asarray(p, np.float64)
    k = k_lo[..., None] + np.arange(width, dtype=np.float64)
    k_odd = np.where(np.mod(k, 2) == 0, k - 1, k)  # the odd member of k's pair (k = 0 -> -1)
    j = (k_odd - 1) / 2  # k_odd = 2j + 1
    j0 = np.maximum(np.min(j, axis=-1), 0.0)
    jj = j0[..., None] + np.arange(width // 2 + 2, dtype=np.float64)
    pb = p[..., None]
    inc = -(2 * pb - 1) * pb * _pmf(jj, 2 * jj + 1, pb)  # C(2j+1, j) (p (1-p))^(j+1) = p Bin(j; 2j+1, p)
    # sum the increments towards the smaller errors (no cancellation): forward from the window's
    # start when they are positive (p < 1/2), backward from its end when negative (p > 1/2)
    e_lo = majority_error_k(2 * j0 + 1, p)[..., None]
    e_hi = majority_error_k(2 * jj[..., -1] + 1, p)[..., None]
    inc = inc[..., :-1]
    fwd = np.concatenate([e_lo, e_lo + np.cumsum(inc, axis=-1)], axis=-1)
    bwd = np.concatenate([e_hi - np.cumsum(inc[..., ::-1], axis=-1)[..., ::-1], e_hi], axis=-1)
    e_odd = np.where(pb > 0.5, bwd, fwd)
    idx = np.clip(j - j0[..., None], 0, e_odd.shape[-1] - 1).astype(np.int64)
    out = np.take_along_axis(e_odd, idx, axis=-1)
    return np.where(k == 0, 0.5, out)


def _keep_and_accuracy(alpha, eps, tau, phi):
    a = V.alpha(alpha)
    t = V.interval("tau", tau, 0.0, 1.0, hi_closed=True)
    f = V.probability("phi", phi)
    q = a * t + (1.0 - a) * f
    p = theory.diluted_vote_accuracy(a, eps, t, f)
    return np.asarray(q, np.float64), np.asarray(p, np.float64)


def routed_majority_error(n, alpha, eps, tau=1.0, phi=0.0):
    """Exact P(w_hat != w) of keep-flagged + majority after n draws (see the module docstring).

    Args:
      n: draws (non-negative integers), any shape; broadcasts with the rest.
      alpha, eps: hard mass and bias. tau in (0, 1], phi in [0, 1]: the flagger's rates.
    Returns float64 error probabilities: absolute error below 2e-23 (the truncated mass) and
    relative error below 1e-12 wherever the result exceeds 1e-10 and n q <= 1e6 (binomial weights
    in Loader's form, sums of positive terms; checked against a wider-window sum up to n = 1e8),
    up to 3e-12 beyond, where the error of ``majority_error_k`` at the window's ends dominates.
    """
    V.integer("n", n)
    q, p = _keep_and_accuracy(alpha, eps, tau, phi)
    n, q, p = np.broadcast_arrays(np.asarray(n, np.float64), q, p)
    mean, sd = n * q, np.sqrt(n * q * (1 - q))
    lo = np.floor(np.maximum(0.0, mean - 10 * sd - 20))
    hi = np.minimum(n, np.ceil(mean + 10 * sd + 20))
    width = int(np.max(hi - lo)) + 1 if n.size else 1
    k = lo[..., None] + np.arange(width, dtype=np.float64)
    nb, qb = n[..., None], q[..., None]
    valid = k <= hi[..., None]
    k = np.where(valid, k, 0.0)
    err = majority_error_window(lo, width, p)
    return np.sum(np.where(valid, _pmf(k, nb, qb) * err, 0.0), axis=-1)


def draws_to_reach(target, alpha, eps, tau=1.0, phi=0.0, *, rtol=0.0, max_draws=2**40):
    """Smallest n with routed_majority_error(n, ...) <= target (exact error, found by bisection).

    The error is non-increasing in n (majority_error is non-increasing in k and Bin(n, q) grows
    stochastically with n), so bisection finds the minimum. ``target`` = eta / gamma turns this
    into the draws needed for a value gap <= eta (compare ``theory.oracle_queries``, which is the
    Hoeffding upper bound, and ``theory.diluted_flagger_queries``). With ``rtol > 0`` the search
    stops once the bracket is within rtol of n (the returned n then satisfies the target and
    exceeds the minimum by at most that fraction). Vectorised over broadcast inputs; returns
    float64 (``inf`` where ``max_draws`` does not suffice).
    """
    t = V.interval("target", target, 0.0, 0.5)
    q, _ = _keep_and_accuracy(alpha, eps, tau, phi)
    t, a, e, ta, ph = np.broadcast_arrays(*(np.asarray(x, np.float64) for x in (t, alpha, eps, tau, phi, q)))[:5]
    err = lambda n: routed_majority_error(n, a, e, ta, ph)
    lo = np.zeros_like(t)  # err(lo) > target (err(0) = 1/2 > target)
    hi = np.ones_like(t)
    while True:
        bad = (err(hi) > t) & (hi < max_draws)
        if not bad.any():
            break
        lo = np.where(bad, hi, lo)
        hi = np.where(bad, np.minimum(hi * 2, max_draws), hi)
    done = err(hi) <= t
    open_ = lambda: done & (hi - lo > np.maximum(1.0, rtol * hi))
    while np.any(open_()):
        mid = np.where(open_(), np.floor((lo + hi) / 2), hi)
        ok = err(mid) <= t
        hi = np.where(ok, mid, hi)
        lo = np.where(ok, lo, mid)
    return np.where(done, hi, np.inf)
