"""Best-of-n and the Gao et al. over-optimisation forms (related-theory.md sections 1-2).

Best-of-n draws n samples from pi_ref and keeps the one with the highest proxy. On a finite
outcome set with distinct proxies sorted increasingly, pi_n(y_j) = F_j^n - F_{j-1}^n
(Beirami et al. 2024); KL(pi_n || pi_ref) <= log n - (n-1)/n, with equality only in the
continuous, tie-free limit. Gao, Schulman, Hilton (2022) fit gold reward against
d = sqrt(KL): R_bon(d) = d (a - b d) and R_RL(d) = d (a - b log d).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import xlogy

from murphyjax.theory import numerics as N
from murphyjax.theory import validate as V


def bon_kl_bound(n):
    """KL(pi_n || pi_ref) <= log n - (n - 1)/n (Stiennon et al. 2020; a bound, Beirami et al. 2024)."""
    n = V.interval("n", n, 1.0, np.inf, lo_closed=True)
    return jnp.log(n) - (n - 1.0) / n


def _sorted_groups(base_probs, proxy):
    p = V.prob_vector("base_probs", base_probs)
    if p.ndim != 1:
        raise ValueError(f"base_probs must be 1-D; got shape {p.shape}")
    if proxy is None:
        return p, None
    r = V.finite("proxy", proxy)
    V.same_shape(base_probs=p, proxy=r)
    return p, r


def _cumsum(x):
    """Cumulative sum along the last axis with a running compensation (TwoSum): the error is a
    few ulps of each partial sum instead of growing with the number of terms."""
    c = jnp.cumsum(x, axis=-1)
    prev = jnp.concatenate([jnp.zeros_like(x[..., :1]), c[..., :-1]], axis=-1)
    s = prev + x
    bp = s - prev
    err = (prev - (s - bp)) + (x - bp)  # exact: prev + x = s + err
    return c + jnp.cumsum((s - c) + err, axis=-1)


def _top_mass(cdf, tail, group, n):
    """F^n - (F - g)^n with F = P(R <= r) (``cdf``), 1 - F = ``tail``, g the atom's (group's) mass.

    Written as F^n (1 - (1 - g/F)^n) = exp(n log F) * -expm1(n log1p(-g/F)), with log F =
    log1p(-tail) when the tail is small: no difference of nearly equal powers, so an atom of
    mass 1e-17 at the top keeps all its digits (~ n g) instead of vanishing.
    """
    F = jnp.where(tail < 0.5, 1.0 - tail, cdf)
    log_F = jnp.where(tail < 0.5, N.log1p(-tail), jnp.log(jnp.where(cdf > 0, cdf, 1.0)))
    frac = jnp.where(F > 0, group / jnp.where(F > 0, F, 1.0), 0.0)
    return jnp.where(F > 0, jnp.exp(n * log_F) * -jnp.expm1(n * N.log1p(-jnp.minimum(frac, 1.0))), 0.0)


def bon_probs(base_probs, n, proxy=None):
    """Exact best-of-n law on a finite outcome set.

    Args:
      base_probs: pi_ref over K outcomes; must sum to 1 within 1e-9 (else ValueError) and is
        renormalised to sum to 1 before use. Without ``proxy`` the outcomes must already be in
        increasing proxy order with distinct proxies: pi_n(y_j) = F_j^n - F_{j-1}^n.
      n: number of samples (integer >= 1).
      proxy: optional proxy values (K,) in any order, ties allowed: a tie group G with
        cumulative mass from F_lo to F_hi gets F_hi^n - F_lo^n, split within the group in
        proportion to pi_ref (ties broken uniformly at random).
    Returns pi_n (K,), in the order of ``base_probs``.

    Each F^n - G^n is evaluated from the upper tail mass and the atom's own mass (see
    ``_top_mass``), never as a difference of powers, with compensated cumulative sums. Relative
    error per atom below (4 + n |log F_j|) 8e-16 (the conditioning of F_j^n = exp(n log F_j)):
    below 1e-13 for the top atom whatever its mass (1e-17 at n = 1000 included), and below 6e-13
    wherever pi_n(y_j) > 1e-300 (there n |log F_j| < 690), for any n up to 1e12 (checked against
    exact rational and 400-digit mpmath arithmetic, ties included).
    """
    p, r = _sorted_groups(base_probs, proxy)
    n = V.integer("n", n, lo=1)
    p = p / jnp.sum(p)
    if r is None:
        cdf = _cumsum(p)
        tail = jnp.concatenate([_cumsum(p[::-1])[::-1][1:], jnp.zeros(1, p.dtype)])  # P(R > r_j), from the top
        return _top_mass(cdf, tail, p, n)
    # tie-aware: F_hi = P(R <= r_j), tail = P(R > r_j), group = P(R = r_j)
    pick = lambda m: jnp.sum(jnp.where(m, p[None, :], 0.0), axis=1)
    cdf = pick(r[None, :] <= r[:, None])
    tail = pick(r[None, :] > r[:, None])
    group = pick(r[None, :] == r[:, None])
    share = jnp.where(group > 0, p / jnp.where(group > 0, group, 1.0), 0.0)
    return share * _top_mass(cdf, tail, group, n)


def bon_kl(base_probs, n, proxy=None):
    """Exact KL(pi_n || pi_ref) on a finite outcome set (<= ``bon_kl_bound(n)``)."""
    p, _ = _sorted_groups(base_probs, proxy)
    q = bon_probs(base_probs, n, proxy)
    return jnp.sum(jnp.where(q > 0, xlogy(q, q) - xlogy(q, jnp.where(p > 0, p, 1.0)), 0.0))


def bon_win_rate(n):
    """Continuous, tie-free win rate of best-of-n against one pi_ref sample: n/(n+1)."""
    n = V.interval("n", n, 1.0, np.inf, lo_closed=True)
    return n / (n + 1.0)


def bon_win_rate_exact(base_probs, n, proxy=None):
    """Exact win rate of pi_n against pi_ref on a finite set, ties counting 1/2 (<= n/(n+1))."""
    p, r = _sorted_groups(base_probs, proxy)
    q = bon_probs(base_probs, n, proxy)
    if r is None:
        r = jnp.arange(p.shape[0], dtype=V.F64)
    below = jnp.sum(jnp.where(r[None, :] < r[:, None], p[None, :], 0.0), axis=1)
    tie = jnp.sum(jnp.where(r[None, :] == r[:, None], p[None, :], 0.0), axis=1)
    return jnp.sum(q * (below + 0.5 * tie))


def expected_max_normal(n, num: int = 200001):
    """E[max of n i.i.d. N(0, 1)] = int x n phi(x) Phi(x)^(n-1) dx (Simpson quadrature, accurate to ~1e-11).

    Known values: n=2: 1/sqrt(pi); n=3: 3/(2 sqrt(pi)); n=1000: 3.2414358.
    """
    n = V.integer("n", n, lo=1)
    x = jnp.linspace(-12.0, 12.0 + float(np.sqrt(2 * np.log(max(float(np.max(np.asarray(n))), 2.0)))), num)
    logpdf = jax.scipy.stats.norm.logpdf(x)
    logcdf = jax.scipy.stats.norm.logcdf(x)
    nb = jnp.asarray(n)[..., None]
    dens = jnp.exp(jnp.log(nb) + logpdf + (nb - 1.0) * logcdf)
    h = x[1] - x[0]
    w = jnp.ones(num).at[1:-1:2].set(4.0).at[2:-1:2].set(2.0) * h / 3.0
    return jnp.sum(w * x * dens, axis=-1)


def tilt_frontier_normal(kl):
    """Largest E[P] at KL budget D for a N(0, 1) proxy: sqrt(2 D) (attained by tilting)."""
    return jnp.sqrt(2.0 * V.nonnegative("kl", kl))


def bon_unbiased_estimate(scores_by_proxy, n):
    """Nakano et al. (2021) unbiased estimate of the best-of-n score from N >= n samples.

    Args:
      scores_by_proxy: scores (gold or proxy) of N samples sorted by increasing proxy.
      n: best-of-n (1 <= n <= N).
    Returns sum_{i=n}^{N} C(i-1, n-1)/C(N, n) s_(i).
    """
    s = V.finite("scores_by_proxy", scores_by_proxy)
    N = s.shape[-1]
    n = int(V.integer("n", n, lo=1))
    if n > N:
        raise ValueError(f"n must be <= the number of samples N={N}; got {n}")
    i = jnp.arange(1, N + 1, dtype=V.F64)
    from jax.scipy.special import gammaln

    logw = gammaln(i) - gammaln(n) - gammaln(i - n + 1.0) - (gammaln(N + 1.0) - gammaln(n + 1.0) - gammaln(N - n + 1.0))
    w = jnp.where(i >= n, jnp.exp(jnp.where(i >= n, logw, 0.0)), 0.0)
    return jnp.sum(w * s, axis=-1)


# --------------------------------------------------------------------------- Gao et al.
def gao_bon(d, a, b):
    """Gao et al. (2022) best-of-n form R(d) = d (a - b d), d = sqrt(KL)."""
    d = V.nonnegative("d", d)
    return d * (a - b * d)


def gao_rl(d, a, b):
    """Gao et al. (2022) RL form R(d) = d (a - b log d) (R(0) = 0)."""
    d = V.nonnegative("d", d)
    return jnp.where(d > 0, d * (a - b * jnp.log(jnp.where(d > 0, d, 1.0))), 0.0)


def gao_peak(a, b, form: str):
    """Peak of the Gao forms: bon d* = a/(2b), R* = a^2/(4b); rl d* = exp(a/b - 1), R* = b d*."""
    a = V.finite("a", a)
    b = V.positive("b", b)
    if form == "bon":
        return {"d": a / (2 * b), "kl": (a / (2 * b)) ** 2, "value": a**2 / (4 * b)}
    if form == "rl":
        d = jnp.exp(a / b - 1.0)
        return {"d": d, "kl": d**2, "value": b * d}
    raise ValueError(f"form must be 'bon' or 'rl'; got {form!r}")


def fit_gao(d, reward, form: str):
    """Least-squares fit of a Gao et al. form to a measured curve (reward vs d = sqrt(KL)).

    Both forms are linear in (a, b): bon: R = a d - b d^2; rl: R = a d - b d log d.
    Returns dict ``a``, ``b``, ``rss``, ``r2`` and ``peak`` (``gao_peak``; nan when b <= 0).
    """
    d = np.asarray(V.nonnegative("d", d), float)
    R = np.asarray(V.finite("reward", reward), float)
    if d.shape != R.shape or d.ndim != 1 or d.size < 3:
        raise ValueError(f"d and reward must be 1-D of equal length >= 3; got {d.shape} and {R.shape}")
    if form == "bon":
        X = np.stack([d, -d**2], 1)
    elif form == "rl":
        X = np.stack([d, -np.where(d > 0, d * np.log(np.where(d > 0, d, 1.0)), 0.0)], 1)
    else:
        raise ValueError(f"form must be 'bon' or 'rl'; got {form!r}")
    coef, *_ = np.linalg.lstsq(X, R, rcond=None)
    res = R - X @ coef
    rss = float(res @ res)
    tss = float(((R - R.mean()) ** 2).sum())
    a, b = float(coef[0]), float(coef[1])
    peak = {k: float(v) for k, v in gao_peak(a, b, form).items()} if b > 0 else {"d": float("nan"), "kl": float("nan"), "value": float("nan")}
    return {"a": a, "b": b, "rss": rss, "r2": 1.0 - rss / tss if tss > 0 else float("nan"), "peak": peak}
