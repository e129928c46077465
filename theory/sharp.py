"""Sharper than the paper: exact Bayes errors of the two-world test and Chernoff exponents.

Theorem 1's lower bound (gamma/4) exp(-n alpha kappa(eps)) uses the KL, kappa(eps) ≈ 8 eps^2 per
hit; the achievable error exponent is the Chernoff information C(eps) = -log(2 sqrt(1/4 - eps^2))
= -(1/2) log(1 - 4 eps^2) ≈ 2 eps^2 per hit, so the bound loosens exponentially in n (by a
factor about exp(6 n alpha eps^2)). This module computes the exact Bayes (= minimax, by the
symmetry of the two worlds) sign error of each query protocol as a binomial sum:

  * ``"all"``: query every round, the learner knows which contexts are hard (it knows r_+ and
    r_- and so where they differ) and runs the likelihood-ratio test on the hard labels:
    sum_h Bin(h; n, alpha) maj(h, 1/2 + eps).
  * ``"all_blind"``: query every round, majority over all n labels (hardness unknown; easy labels
    are fair coins): maj(n, 1/2 + alpha eps), exponent ≈ 2 n alpha^2 eps^2 (paper note 9.4).
  * ``"routed"``: the calibration oracle of Theorem 2 with n *draws*: labels only on hits, so
    hits ~ Bin(n, alpha) and the error equals ``"all"``'s: routing saves labels, not draws.
  * ``"routed_labels"``: Theorem 2 with a budget of n *labels* (T = n hits): maj(n, 1/2 + eps).
  * ``"flagged"``: a noisy flagger (tau, phi) with n draws, majority over the kept labels whose
    accuracy is diluted to 1/2 + eps p, p = alpha tau/(alpha tau + (1 - alpha) phi):
    sum_k Bin(k; n, alpha tau + (1 - alpha) phi) maj(k, 1/2 + eps p).
Ties are broken by a fair coin. Value gap = gamma x sign error for learners that output pi^+ or
pi^- (paper note 9.5).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, xlogy

from murphyjax.theory import validate as V
from murphyjax.theory.murphy import flagger_hit_fraction, kappa, majority_error

PROTOCOLS = ("all", "all_blind", "routed", "routed_labels", "flagged")


def chernoff_information(eps):
    """Chernoff information between Ber(1/2 + eps) and Ber(1/2 - eps): -(1/2) log(1 - 4 eps^2).

    The optimal error exponent per hit of the symmetric test (attained at s = 1/2 by symmetry).
    """
    e = V.eps(eps)
    return -0.5 * jnp.log1p(-4.0 * e**2)


def _binom_weights(n: int, p):
    k = np.arange(n + 1, dtype=np.float64)
    p = np.asarray(p, np.float64)[..., None]
    logw = gammaln(n + 1.0) - gammaln(k + 1.0) - gammaln(n - k + 1.0) + xlogy(k, p) + xlogy(n - k, 1.0 - p)
    return jnp.exp(logw), k


def bayes_error(protocol: str, n: int, alpha, eps, tau=1.0, phi=0.0):
    """Exact Bayes sign error of the two-world test for a query protocol with budget n.

    Args:
      protocol: one of ``PROTOCOLS`` (see the module docstring).
      n: budget, a non-negative integer (rounds / draws; labels for "routed_labels").
      alpha: hard mass in (0, 1); eps: bias in (0, 1/2); tau, phi: flagger rates ("flagged").
    Returns:
      P(w_hat != w), broadcast over alpha, eps (and tau, phi).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}")
    n = int(V.integer("n", n))
    a = V.alpha(alpha)
    e = V.eps(eps)
    if protocol == "all_blind":
        return majority_error(n, 0.5 + a * e)
    if protocol == "routed_labels":
        return majority_error(n, 0.5 + e) + 0.0 * a
    keep, acc = _keep_accuracy(protocol, a, e, tau, phi)
    w, k = _binom_weights(n, keep)                                      # (..., n+1)
    maj = majority_error(k, acc[..., None])                            # O(n) terms, O(1) each
    return jnp.sum(w * maj, axis=-1)


def _keep_accuracy(protocol, a, e, tau, phi):
    """(P(a draw is kept), P(a kept label is right)) of the "all"/"routed"/"flagged" protocols."""
    if protocol in ("all", "routed"):
        keep, acc = a, 0.5 + e
    else:
        t = V.interval("tau", tau, 0.0, 1.0, hi_closed=True)
        f = V.probability("phi", phi)
        keep = a * t + (1.0 - a) * f
        acc = 0.5 + e * flagger_hit_fraction(a, t, f)
    return jnp.broadcast_arrays(jnp.asarray(keep, V.F64), jnp.asarray(acc, V.F64))


def bayes_error_grid(protocol: str, ns, alpha: float, eps: float, tau: float = 1.0, phi: float = 0.0):
    """:func:`bayes_error` at every budget of a grid ``ns`` for one scalar (alpha, eps) (and tau, phi).

    Same binomial sums, sum_k Bin(k; n, keep) maj(k, acc), but with one array shape for the whole
    grid (vote counts k = 0..max(ns), masked above each n), so a grid costs one XLA compilation
    instead of one per n (``bayes_error``'s shapes depend on n). Returns (len(ns),) float64.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}")
    ns = np.asarray([int(V.integer("n", n)) for n in np.atleast_1d(ns)], np.float64)
    a, e = V.alpha(alpha), V.eps(eps)
    if protocol == "all_blind":
        return majority_error(ns, 0.5 + a * e)
    if protocol == "routed_labels":
        return majority_error(ns, 0.5 + e) + 0.0 * a
    keep, acc = _keep_accuracy(protocol, a, e, tau, phi)
    k = np.arange(int(ns.max()) + 1, dtype=np.float64)
    n = ns[:, None]
    rest = np.maximum(n - k, 0.0)
    logw = gammaln(n + 1.0) - gammaln(k + 1.0) - gammaln(rest + 1.0) + xlogy(k, keep) + xlogy(rest, 1.0 - keep)
    w = jnp.where(k <= n, jnp.exp(logw), 0.0)                           # (len(ns), max(ns) + 1)
    return jnp.sum(w * majority_error(k, acc), axis=-1)


def error_exponents(alpha, eps):
    """Per-round exponents: the paper's bound (alpha kappa), the achievable one and the blind one.

    Returns dict ``paper_bound`` = alpha kappa(eps) (Theorem 1), ``achievable`` =
    -log(1 - alpha (1 - exp(-C))) ≈ alpha C(eps) (LR test with hardness known or routed, by
    the binomial generating function), ``blind`` = C at accuracy 1/2 + alpha eps (majority over
    all labels). The bound's looseness grows like exp(n (paper_bound - achievable)).
    """
    a = V.alpha(alpha)
    e = V.eps(eps)
    C = chernoff_information(e)
    return {
        "paper_bound": a * kappa(e),
        "achievable": -jnp.log1p(-a * (1.0 - jnp.exp(-C))),
        "blind": chernoff_information(a * e),
    }


def chernoff_error_approx(n, alpha, eps):
    """Chernoff approximation of the "all"/"routed" error: exp(-n * achievable exponent) / 2.

    Not a bound in either direction at small n; the exponent is exact as n -> inf.
    """
    n = V.nonnegative("n", n)
    return 0.5 * jnp.exp(-n * error_exponents(alpha, eps)["achievable"])
