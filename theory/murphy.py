"""Murphy's Gap: the minimax lower bound, the calibration oracle and its relatives.

Paper: Gaikwad, "Murphy's Laws of AI Alignment", arXiv:2509.05381 v3, Section 2 and
Appendices A, B.1, B.2, B.5, B.7, B.8, D.7. Equation references below are to v3.

Conventions (the paper's Section 9 ambiguities, resolved):
  * Labels are relative to a fixed reference action (paper note 9.1): on hard contexts
    ``P_w(Z = 1) = 1/2 + w * eps`` with ``Z = 1{label favours pi^+(x)}``.
  * ``n`` counts query *rounds* (context draws that may carry a label); the oracle
    procedure counts labels ``T`` and draws ``T / alpha`` separately (note 9.3).
All KL values are in nats.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from murphyjax.theory import numerics as N
from murphyjax.theory import validate as V


# --------------------------------------------------------------------------- Lemma 1
def kappa(eps):
    """Per-hit KL between opposite Massart biases (Lemma 1, eq. in Section 2.4).

    kappa(eps) = KL(Ber(1/2 + eps) || Ber(1/2 - eps)) = 4 eps atanh(2 eps).

    Relative error below 1e-15 on (0, 1/2), eps near 0 and near 1/2 included (checked against
    60-digit arithmetic); 0 only where kappa ~ 8 eps^2 underflows (eps < 1e-154).

    Args:
      eps: bias magnitude, in (0, 1/2); any shape.
    Returns:
      kappa(eps) in nats, same shape.
    """
    e = V.eps(eps)
    # atanh(2 eps) = log1p(4 eps / (1 - 2 eps)) / 2 (XLA's arctanh is off by up to ~1e-15)
    return 2.0 * e * N.log1p(4.0 * e / (1.0 - 2.0 * e))


def kappa_upper_bound(eps):
    """Lemma 1 bound: kappa(eps) <= 8 eps^2 / (1 - 4 eps^2).

    The denominator is formed as (1 - 2 eps)(1 + 2 eps) (1 - 2 eps is exact for eps >= 1/4), not
    as 1 - 4 eps^2, which cancels as eps -> 1/2. Relative error below 1e-15 on (0, 1/2) (checked
    against 60-digit arithmetic; 0 only where 8 eps^2 underflows, eps < 1e-154).
    """
    e = V.eps(eps)
    return 8.0 * e**2 / ((1.0 - 2.0 * e) * (1.0 + 2.0 * e))


def bernoulli_kl(p, q):
    """KL(Ber(p) || Ber(q)) in nats, with 0 log 0 = 0.

    Summed as two non-negative terms, bd0(p, q) + bd0(1 - p, 1 - q) with bd0(x, m) =
    x log(x/m) - x + m (``numerics.bregman``), each fed the exact difference p - q: no
    cancellation when p is close to q (KL ~ (p - q)^2 / (2 q (1 - q))) nor near 0 or 1.
    Relative error below 1e-13 over the whole domain (checked against 700-digit arithmetic,
    including p - q of a few ulp and p, q within 1e-300 of 0 or 1e-16 of 1).

    Args:
      p: in [0, 1].
      q: in (0, 1) (the KL is infinite at the ends unless p equals q there).
    """
    p = V.probability("p", p)
    q = V.interval("q", q, 0.0, 1.0)
    V.broadcastable(p=p, q=q)
    return N.bernoulli_kl(p, q)


# --------------------------------------------------------------------------- Theorem 1
def transcript_kl_bound(n, alpha, eps):
    """Transcript KL bound of Theorem 1: KL(P^+ || P^-) <= n alpha kappa(eps).

    Lemma 2 bounds the expected number of queried hard contexts by ``n alpha``; each carries
    at most ``kappa(eps)`` nats (Lemma 1); the chain rule (Lemma 4) adds them up.
    """
    n = V.nonnegative("n", n)
    a = V.alpha(alpha)
    return n * a * kappa(eps)


def bretagnolle_huber(kl):
    """Lemma 3: the Bayes error of any test between P and Q is >= exp(-KL(P||Q)) / 4."""
    kl = V.nonnegative("kl", kl)
    return 0.25 * jnp.exp(-kl)


def murphy_lower_bound(n, alpha, eps, gamma):
    """Theorem 1 (Murphy's Gap): minimax value gap >= (gamma/4) exp(-n alpha kappa(eps)).

    inf_alg sup_w (V_w(pi^w) - E_w[V_w(pi_hat)]) >= (gamma / 4) exp(-n alpha kappa(eps)).

    Args:
      n: query budget (rounds), >= 0.
      alpha: hard-context mass mu(X_hard), in (0, 1).
      eps: feedback bias on X_hard, in (0, 1/2).
      gamma: separation of the two worlds' optimal policies (Section 2.1), > 0.
    All arguments broadcast; a grid of 10^6 points takes milliseconds.

    Note (paper note 9.5): the reduction "a testing mistake costs at least gamma" is exact
    for learners that output pi^+ or pi^-; for general outputs the paper asserts it.
    """
    g = V.positive("gamma", gamma)
    return g * bretagnolle_huber(transcript_kl_bound(n, alpha, eps))


def sign_error_lower_bound(n, alpha, eps):
    """Proposition 5: any estimate of w from n queries errs w.p. >= exp(-n alpha kappa)/4 in the worst case.

    The bound is on max_w P_w(w_hat != w) (and on the average over w = +-1, the Bayes error under
    a uniform prior), not on the error in every world: an estimator that always says +1 never
    errs when w = +1.
    """
    return bretagnolle_huber(transcript_kl_bound(n, alpha, eps))


def hard_disagreement_lower_bound(n, alpha, eps):
    """Proposition 5 (second part): E[1{pi^w_hat(X) != pi^w(X)} 1{X in X_hard}] >= alpha P(err).

    With P(err) from ``sign_error_lower_bound``, this holds for some world (the worst case over w).
    """
    return V.alpha(alpha) * sign_error_lower_bound(n, alpha, eps)


def budget_for_unit_exponent(alpha, eps):
    """Budget n at which n alpha kappa(eps) = 1 (the scale below which Murphy's Gap is Omega(gamma))."""
    return 1.0 / (V.alpha(alpha) * kappa(eps))


# --------------------------------------------------------------------------- Theorem 2
def oracle_hits(eps, gamma, eta):
    """Theorem 2: labelled hits T = log(gamma/eta) / (2 eps^2) for a value gap <= eta.

    Hoeffding gives P(w_hat != w) <= exp(-2 T eps^2), so gamma exp(-2 T eps^2) <= eta.
    Returned as a real number; round up for a procedure.
    """
    e = V.eps(eps)
    g = V.positive("gamma", gamma)
    h = _eta(eta, g)
    return jnp.log(g / h) / (2.0 * e**2)


def oracle_queries(alpha, eps, gamma, eta, tpr=1.0):
    """Theorem 2 / Theorem 3: context draws Q = log(gamma/eta) / (2 alpha tpr eps^2).

    With the exact oracle (tpr = 1) this is Theorem 2's T / alpha; with a noisy flagger of
    true-positive rate ``tpr`` it is Theorem 3's T / (alpha tau). Both are the expected number of
    draws until keep-flagged + majority holds T labels from true hits (each draw is a flagged
    hard context with probability alpha tau): the cost of that one procedure, hence an upper
    bound on the draws it needs for a value gap <= eta, not a lower bound over procedures.
    Counts *draws* (rounds); the number of labels is ``oracle_hits`` (paper note 9.3).
    Theorem 3 ignores the labels of false positives; see ``diluted_flagger_queries``.
    """
    a = V.alpha(alpha)
    t = V.interval("tpr", tpr, 0.0, 1.0, hi_closed=True)
    return oracle_hits(eps, gamma, eta) / (a * t)


def majority_error_bound(T, eps):
    """Hoeffding bound of Theorem 2 / A.5: P(sign(sum (Z_i - 1/2)) != w) <= exp(-2 T eps^2)."""
    T = V.nonnegative("T", T)
    e = V.eps(eps)
    return jnp.exp(-2.0 * T * e**2)


def _betacf(a, b, x):
    """Continued fraction of I_x(a, b) (modified Lentz, as in Numerical Recipes' betacf), iterated
    until every entry has converged to 4e-16 (about 0.4 sqrt(a + b) steps at x ~ a / (a + b))."""
    tiny = 1e-300
    fix = lambda v: jnp.where(jnp.abs(v) < tiny, tiny, v)
    d = 1.0 / fix(1.0 - (a + b) * x / (a + 1.0))
    init = (jnp.asarray(1.0), jnp.ones_like(d), d, d, jnp.zeros(d.shape, bool))

    def step(state):
        m, c, d, h, done = state
        aa = m * (b - m) * x / ((a - 1.0 + 2 * m) * (a + 2 * m))
        d = 1.0 / fix(1.0 + aa * d)
        c = fix(1.0 + aa / c)
        h1 = h * d * c
        aa = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 1.0 + 2 * m))
        d = 1.0 / fix(1.0 + aa * d)
        c = fix(1.0 + aa / c)
        delta = d * c
        return m + 1.0, c, d, jnp.where(done, h, h1 * delta), done | (jnp.abs(delta - 1.0) < 4e-16)

    return jax.lax.while_loop(lambda s: ~jnp.all(s[4]) & (s[0] < 1e6), step, init)[3]


def majority_error(T, p):
    """Exact error of the majority vote over T i.i.d. Ber(p) votes (p = P(vote is right)).

    P(S < T/2) + P(S = T/2) / 2 (a tie is broken by a fair coin), S ~ Bin(T, p). The binomial
    CDF is the regularised incomplete beta function, P(S <= m) = I_{1-p}(T - m, m + 1) =
    p pmf(m) cf, with cf its continued fraction (run to convergence: ~0.4 sqrt(T) steps near
    p = 1/2) and the pmf in Loader's saddle-point form (no log-gamma cancellation); when
    1 - p is above the fraction's fast-convergence point the symmetric form 1 - I_p(m + 1, T - m)
    is used. Relative error about 2e-15 (|log P| + sqrt(T)/2), P the returned value (the second
    term is the fraction's accumulated rounding): below 2e-13 for T <= 1e4 and P >= 1e-30,
    below 1e-12 for T <= 1e6 (measured 1.3e-13), 1e-11 at T = 1e8 (measured 1.1e-12; checked
    against exact rational sums for T <= 2000 and 40-digit mpmath sums of the binomial terms up
    to T = 1e8); jax's betainc instead loses ~T 1e-15 (1e-9 at T = 1e6) to cancelling log-gammas
    and stops after 600 steps.

    Args:
      T: number of votes, non-negative integers (any shape; concrete, not traced).
      p: probability that a vote is correct, in [0, 1]; broadcasts against T.
    """
    V.integer("T", T)
    T = jnp.asarray(T, V.F64)
    p = V.probability("p", p)
    return _majority_error(*jnp.broadcast_arrays(T, p))


@jax.jit
def _majority_error(T, p):
    m = jnp.floor((T - 1.0) / 2.0)  # the largest k with 2k < T (-1 when T = 0)
    interior = (p > 0) & (p < 1) & (m >= 0)
    pi = jnp.where(interior, p, 0.5)
    Ti, mi = jnp.where(interior, T, 1.0), jnp.where(interior, m, 0.0)
    a, b, x = Ti - mi, mi + 1.0, 1.0 - pi
    direct = x < (a + 1.0) / (a + b + 2.0)
    cf = _betacf(jnp.where(direct, a, b), jnp.where(direct, b, a), jnp.where(direct, x, pi))
    below = jnp.where(direct, pi * N.binom_pmf(mi, Ti, pi) * cf, 1.0 - (1.0 - pi) * N.binom_pmf(mi + 1.0, Ti, pi) * cf)
    # p = 0: every vote wrong (S = 0); p = 1: S = T; T = 0: no vote (m = -1)
    below = jnp.where(interior, below, jnp.where((p == 0) & (m >= 0), 1.0, 0.0))
    even = jnp.mod(T, 2.0) == 0
    half = jnp.where(even, T / 2.0, 0.0)
    tie_pmf = jnp.where((p > 0) & (p < 1), N.binom_pmf(half, T, pi), jnp.where(p == 0, half == 0, half == T))
    return below + 0.5 * jnp.where(even, tie_pmf, 0.0)


# --------------------------------------------------------------------------- Theorem 3
def flagger_hit_fraction(alpha, tau, phi):
    """A.6: fraction of flagged draws that are true hits, alpha tau / (alpha tau + (1-alpha) phi)."""
    a = V.alpha(alpha)
    t = V.interval("tau", tau, 0.0, 1.0, hi_closed=True)
    f = V.probability("phi", phi)
    return a * t / (a * t + (1.0 - a) * f)


def diluted_vote_accuracy(alpha, eps, tau, phi):
    """Accuracy of one flagged label when false positives carry symmetric (mean-1/2) labels.

    1/2 + eps * alpha tau / (alpha tau + (1 - alpha) phi). Theorem 3 counts only true hits
    and so ignores this dilution (paper note 9.6).
    """
    return 0.5 + V.eps(eps) * flagger_hit_fraction(alpha, tau, phi)


def diluted_flagger_queries(alpha, eps, gamma, eta, tau, phi):
    """Draws needed by keep-flagged + majority when every flagged label is used.

    The vote margin is eps_eff = eps * p with p = flagger_hit_fraction; Hoeffding needs
    T' = log(gamma/eta) / (2 eps_eff^2) flagged labels, i.e. T' / (alpha tau + (1-alpha) phi)
    draws. Equals ``oracle_queries`` when (tau, phi) = (1, 0) and exceeds Theorem 3's count
    by the factor 1/p whenever phi > 0.
    """
    a = V.alpha(alpha)
    p = flagger_hit_fraction(alpha, tau, phi)
    e = V.eps(eps)
    g = V.positive("gamma", gamma)
    labels = jnp.log(g / _eta(eta, g)) / (2.0 * (e * p) ** 2)
    keep = a * jnp.asarray(tau, V.F64) + (1.0 - a) * jnp.asarray(phi, V.F64)
    return labels / keep


# --------------------------------------------------------------------------- B.1, B.2
def heterogeneous_kappa(eps_hard, weights=None):
    """Proposition 7: K = E[kappa(eps(X)) | X in X_hard] for a bias eps(x) on the hard set.

    Args:
      eps_hard: eps(x) at hard contexts (last axis), each in (0, 1/2).
      weights: conditional law of X given X_hard on those contexts (sums to 1); uniform if None.
    """
    k = kappa(eps_hard)
    if weights is None:
        return jnp.mean(k, axis=-1)
    w = V.prob_vector("weights", weights)
    V.same_shape(eps_hard=k, weights=w)
    return jnp.sum(w * k, axis=-1)


def heterogeneous_lower_bound(n, alpha, eps_hard, gamma, weights=None):
    """Proposition 7: Delta_n >= (gamma/4) exp(-n alpha K)."""
    K = heterogeneous_kappa(eps_hard, weights)
    return V.positive("gamma", gamma) * bretagnolle_huber(V.nonnegative("n", n) * V.alpha(alpha) * K)


def mixture_exponent(alphas, eps):
    """Proposition 8: sum_j alpha_j kappa_j for disjoint hard subsets S_j (last axis)."""
    a = V.interval("alphas", alphas, 0.0, 1.0)
    c = V.concrete(alphas)
    if c is not None and (c.sum(-1) >= 1).any():
        raise ValueError(f"alphas must sum to less than 1 (total hard mass); got {V._fmt(c.sum(-1))}")
    k = kappa(eps)
    V.broadcastable(alphas=a, eps=k)
    return jnp.sum(a * k, axis=-1)


def mixture_lower_bound(n, alphas, eps, gamma):
    """Proposition 8: Delta_n >= (gamma/4) exp(-n sum_j alpha_j kappa_j)."""
    return V.positive("gamma", gamma) * bretagnolle_huber(V.nonnegative("n", n) * mixture_exponent(alphas, eps))


# --------------------------------------------------------------------------- B.8 (erratum)
def rating_kl_per_hit(m):
    """Per-hit KL for scalar ratings: KL(P^+ || P^-) = E_+[LLR] = m (A.8, correct form).

    For any rating law, the KL is the mean of the log-likelihood ratio under P^+. B.8 writes
    m^2/(2 sigma^2) instead; see ``rating_kl_per_hit_paper``.
    """
    return V.nonnegative("m", m)


def rating_kl_per_hit_paper(m, sigma2):
    """B.8 as written: "D_KL = m^2 / (2 sigma^2) per hit" (an erratum, kept for comparison).

    For Gaussian ratings the LLR has variance sigma^2 = 2m, so this equals m/4: four times
    smaller than the true KL m. The resulting "lower bound" (1/4) exp(-T m/4) exceeds the
    exact Bayes error Phi(-sqrt(T m / 2)) for every T m > 2.366 (the one crossing; see
    ``gaussian_rating_bayes_error``).
    """
    return V.nonnegative("m", m) ** 2 / (2.0 * V.positive("sigma2", sigma2))


def gaussian_rating_llr(delta, sd):
    """Moments of the per-hit LLR for ratings R ~ N(+-delta, sd^2) under w = +-1.

    LLR l(R) = 2 delta R / sd^2; under w = +: mean m = 2 delta^2/sd^2, variance 4 delta^2/sd^2
    = 2m (it is Gaussian, hence 2m-subgaussian). Returns (m, sigma2).
    """
    d = V.positive("delta", delta)
    s = V.positive("sd", sd)
    m = 2.0 * d**2 / s**2
    return m, 2.0 * m


def gaussian_rating_bayes_error(T, delta, sd):
    """Exact Bayes error of the equal-prior test of w from T ratings N(+-delta, sd^2).

    The sufficient statistic is the mean rating; error = Phi(-sqrt(T) delta / sd).
    """
    T = V.nonnegative("T", T)
    return jax.scipy.stats.norm.cdf(-jnp.sqrt(T) * V.positive("delta", delta) / V.positive("sd", sd))


# --------------------------------------------------------------------------- B.5, D.7 SPRT
def sprt_threshold(delta):
    """Wald's symmetric SPRT threshold b = log((1 - delta)/delta) for error targets (delta, delta)."""
    d = V.interval("delta", delta, 0.0, 0.5)
    return jnp.log((1.0 - d) / d)


def sprt_expected_hits_paper(eps, delta):
    """B.5 as stated: E[T] <= log((1 - delta)/delta) / kappa(eps) (Wald, no overshoot)."""
    return sprt_threshold(delta) / kappa(eps)


def sprt_exact(eps, delta):
    """Exact SPRT on Massart labels: error probability and expected number of hits.

    Each label moves the LLR by +-L with L = log((1/2+eps)/(1/2-eps)) = 2 atanh(2 eps),
    upward w.p. p = 1/2 + eps under the true world. Stopping when |LLR| >= b = sprt_threshold
    means stopping when the +-1 walk reaches +-k with k = ceil(b / L): gambler's ruin on
    {0, ..., 2k} from k. Returns a dict with ``steps`` (k), ``error`` (= r^k/(1+r^k),
    r = q/p) and ``expected_hits`` (k (1 - 2 error) / (2 eps)). Wald's approximation in B.5
    drops the overshoot k L - b; the exact error is <= delta.
    """
    e = V.eps(eps)
    b = sprt_threshold(delta)
    L = 2.0 * jnp.arctanh(2.0 * e)
    k = jnp.ceil(b / L - 1e-12)
    p, q = 0.5 + e, 0.5 - e
    rk = jnp.exp(k * (jnp.log(q) - jnp.log(p)))
    err = rk / (1.0 + rk)
    expected = k * (1.0 - 2.0 * err) / (p - q)
    return {"steps": k, "error": err, "expected_hits": expected}


def sequential_queries(alpha, tau, eps, delta):
    """D.7 / B.5 with routing: expected draws = E[T_SPRT] / (alpha tau) (exact SPRT hits)."""
    a = V.alpha(alpha)
    t = V.interval("tau", tau, 0.0, 1.0, hi_closed=True)
    return sprt_exact(eps, delta)["expected_hits"] / (a * t)


# --------------------------------------------------------------------------- B.7
def score_flagger(u, hard, weights, keep_rate):
    """B.7: the keep-rate-constrained flagger that thresholds a score u(x) (finite contexts).

    Among all (randomised) rules with E[keep] = keep_rate, the Neyman-Pearson rule keeps
    contexts in decreasing order of P(hard | x) = hard(x); when u is monotone in that
    likelihood ratio (the MLR assumption) this is a threshold on u. It is a threshold rule in
    u alone: every context with u above the threshold is kept, and the contexts tied at the
    threshold are kept with one common probability that makes the keep rate exact, so the
    result does not depend on the order of the contexts. Exact up to the rounding of the
    cumulative weights (absolute error ~1e-16 times the number of contexts).

    Args:
      u: score per context (K,), larger = more likely hard (used for ordering).
      hard: P(X in X_hard | x) per context, in [0, 1] (0/1 for a deterministic hard set).
      weights: mu(x), a probability vector (K,).
      keep_rate: beta in (0, 1).
    Returns: dict with ``keep`` (probability of keeping each context), ``tau`` (= P(keep |
      hard)), ``phi`` (= P(keep | easy)) and ``alpha``.
    """
    u = V.finite("u", u)
    h = V.probability("hard", hard)
    w = V.prob_vector("weights", weights)
    V.same_shape(u=u, hard=h, weights=w)
    beta = V.interval("keep_rate", keep_rate, 0.0, 1.0)
    order = jnp.argsort(-u)
    su = -u[order]  # increasing
    cw = jnp.concatenate([jnp.zeros(1, w.dtype), jnp.cumsum(w[order])])
    above = cw[jnp.searchsorted(su, -u, side="left")]  # mass with a strictly larger score
    group = cw[jnp.searchsorted(su, -u, side="right")] - above  # mass tied with this score
    keep = jnp.where(group > 0, jnp.clip((beta - above) / jnp.where(group > 0, group, 1.0), 0.0, 1.0), above < beta)
    alpha_ = jnp.sum(w * h)
    tau = jnp.sum(w * h * keep) / alpha_
    phi = jnp.sum(w * (1.0 - h) * keep) / (1.0 - alpha_)
    return {"keep": keep, "tau": tau, "phi": phi, "alpha": alpha_}


# --------------------------------------------------------------------------- helpers
def _eta(eta, gamma):
    """eta must lie in (0, gamma) (Theorem 2)."""
    h = V.positive("eta", eta)
    ce, cg = V.concrete(eta), V.concrete(gamma)
    if ce is not None and cg is not None:
        bad = np.broadcast_to(ce, np.broadcast_shapes(np.shape(ce), np.shape(cg))) >= cg
        if np.any(bad):
            raise ValueError(f"eta must lie in (0, gamma); got eta={V._fmt(ce)} with gamma={V._fmt(cg)}")
    return h
