"""Checks of Section 2 and Appendices A, B.1, B.2, B.5, B.7, B.8, D.7."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from murphyjax.theory import murphy as M
from murphyjax.theory.checks._core import Row, check, f

EPS_GRID = np.linspace(0.001, 0.499, 499)


@check(('lemma1',))
def lemma1(key):
    e = jnp.asarray(EPS_GRID)
    direct = M.bernoulli_kl(0.5 + e, 0.5 - e)
    k = M.kappa(e)
    # independent: autodiff of the log-partition of a Bernoulli family gives the same KL
    def kl_expfam(eps):
        eta = lambda p: jnp.log(p / (1 - p))  # natural parameter
        A = lambda t: jnp.log1p(jnp.exp(t))
        t1, t0 = eta(0.5 + eps), eta(0.5 - eps)
        return A(t0) - A(t1) - (t0 - t1) * jax.grad(A)(t1)  # Bregman divergence of A

    bregman = jax.vmap(kl_expfam)(e)
    viol = jnp.max(k - M.kappa_upper_bound(e))
    return [
        Row("lemma1.kappa", "Lemma 1", "kappa(eps) = 4 eps atanh(2 eps) = KL(Ber(1/2+eps)||Ber(1/2-eps)), max |diff| over 499 eps in (0, 1/2)",
            0.0, f(jnp.max(jnp.abs(k - direct))), "exact Bernoulli KL sum", 1e-12),
        Row("lemma1.kappa_bregman", "Lemma 1", "kappa(eps) vs Bregman divergence of the Bernoulli log-partition (autodiff), max |diff|",
            0.0, f(jnp.max(jnp.abs(k - bregman))), "jax.grad", 1e-12),
        Row("lemma1.bound", "Lemma 1", "kappa(eps) <= 8 eps^2/(1 - 4 eps^2) on the eps grid (largest kappa - bound)",
            0.0, f(viol), "grid of 499 eps", 0.0, kind="bound"),
    ]


def _optimal_test_error(n, alpha, eps):
    """Exact Bayes error of the likelihood-ratio test for the query-everything transcript.

    The number of hard hits is Bin(n, alpha); given h hits the LR test is the majority over
    h labels with accuracy 1/2 + eps (ties broken by a coin). ``alpha`` and ``eps`` are
    1-D arrays; returns an array of shape (len(alpha), len(eps)).
    """
    h = np.arange(n + 1.0)
    a = np.asarray(alpha, float)[:, None]
    logp = (gammaln(n + 1.0) - gammaln(h + 1.0) - gammaln(n - h + 1.0))[None, :] + (
        h * np.log(a) + (n - h) * np.log1p(-a))                                    # (A, n+1)
    errs = M.majority_error(h[:, None], 0.5 + np.asarray(eps, float)[None, :])   # (n+1, E)
    return np.exp(np.asarray(logp)) @ np.asarray(errs)


@check(('thm1', 'lemma2'))
def theorem1(key):
    rows = []
    # exact transcript KL of the query-everything protocol: Monte Carlo of the LLR under P^+
    n, alpha, eps, reps = 200, 0.1, 0.1, 20000
    k1, k2, k3 = jax.random.split(key, 3)
    hard = jax.random.bernoulli(k1, alpha, (reps, n))
    z = jax.random.bernoulli(k2, 0.5 + eps, (reps, n))
    L = 2.0 * jnp.arctanh(2.0 * eps)
    llr = jnp.sum(jnp.where(hard, jnp.where(z, L, -L), 0.0), axis=1)
    mc, se = f(jnp.mean(llr)), f(jnp.std(llr) / np.sqrt(reps))
    rows.append(Row("thm1.transcript_kl", "Thm 1 / Lemma 2, 4", f"KL(P+||P-) of the query-everything transcript = n alpha kappa (n={n}, alpha={alpha}, eps={eps}); MC SE {se:.3g}",
                    f(M.transcript_kl_bound(n, alpha, eps)), mc, f"Monte Carlo mean LLR, {reps} transcripts", 4 * se))
    # Bayes error of the optimal test >= Bretagnolle-Huber on a grid
    worst = -np.inf
    alphas, epss = np.array([0.01, 0.1, 0.5]), np.array([0.05, 0.1, 0.3])
    for n_ in [10, 100, 1000]:
        err = _optimal_test_error(n_, alphas, epss)
        lb = np.asarray(M.sign_error_lower_bound(n_, alphas[:, None], epss[None, :]))
        worst = max(worst, float(np.max(lb - err)))
    rows.append(Row("thm1.bayes_error", "Thm 1 / Prop 5 / Lemma 3", "exact Bayes error of the LR test >= exp(-n alpha kappa)/4 on 27 (n, alpha, eps) (largest bound - error)",
                    0.0, worst, "exact binomial sums", 0.0, kind="bound"))
    # Lemma 2: expected hits of an adaptive rule <= n alpha (a rule that queries after a '1' label)
    n2, a2 = 50, 0.2
    def run(k):
        ks = jax.random.split(k, 2)
        hard = jax.random.bernoulli(ks[0], a2, (n2,))
        z = jax.random.bernoulli(ks[1], 0.5 + 0.2, (n2,))
        def step(carry, x):
            last = carry
            h, zz = x
            q = jnp.where(last, 1.0, 0.5)  # adaptive: query surely after a positive label
            return jnp.where(h, zz, last), q * h
        _, hits = jax.lax.scan(step, jnp.array(False), (hard, z))
        return jnp.sum(hits)
    hits = jax.vmap(run)(jax.random.split(k3, 20000))
    rows.append(Row("lemma2.hits", "Lemma 2", f"expected queried hits of an adaptive rule <= n alpha = {n2 * a2:g}",
                    n2 * a2, f(jnp.mean(hits)), "Monte Carlo, 20000 runs", 0.0, kind="bound"))
    return rows


@check(('thm2',))
def theorem2(key):
    Ts, es = np.array([1, 5, 20, 100, 400])[:, None], np.array([0.02, 0.05, 0.1, 0.25, 0.45])[None, :]
    worst = f(jnp.max(M.majority_error(Ts, 0.5 + es) - M.majority_error_bound(Ts, es)))
    # Monte Carlo of the exact binomial majority error
    T, e = 200, 0.05
    z = jax.random.bernoulli(key, 0.5 + e, (100000, T)).sum(1)
    mc = jnp.mean(jnp.where(2 * z < T, 1.0, jnp.where(2 * z == T, 0.5, 0.0)))
    se = float(np.sqrt(f(mc) * (1 - f(mc)) / 100000))
    # draws per T hits: T / alpha (geometric waiting times)
    alpha, Th = 0.05, 40
    k2 = jax.random.fold_in(key, 1)
    draws = jax.random.geometric(k2, alpha, (20000, Th)).sum(1)
    dse = f(jnp.std(draws)) / np.sqrt(20000)
    return [
        Row("thm2.hoeffding", "Thm 2 / A.5", "exact majority error <= exp(-2 T eps^2) on 25 (T, eps) (largest error - bound)",
            0.0, worst, "exact binomial sums", 0.0, kind="bound"),
        Row("thm2.majority_exact", "Thm 2", f"exact majority error (T={T}, eps={e}) vs Monte Carlo (SE {se:.2g})",
            f(M.majority_error(T, 0.5 + e)), f(mc), "Monte Carlo, 1e5 votes", 4 * se),
        Row("thm2.draws", "Thm 2 / note 9.3", f"expected draws for T={Th} hits = T/alpha (alpha={alpha})",
            f(M.oracle_queries(alpha, 0.1, 1.0, float(np.exp(-2 * Th * 0.01))) ), f(jnp.mean(draws)),
            f"Monte Carlo geometric waits (SE {dse:.2g})", 4 * dse),
    ]


@check(('thm3',))
def theorem3(key):
    alpha, tau, phi, eps, N = 0.1, 0.8, 0.2, 0.2, 400000
    k = jax.random.split(key, 3)
    hard = jax.random.bernoulli(k[0], alpha, (N,))
    flag = jax.random.bernoulli(k[1], jnp.where(hard, tau, phi))
    z = jax.random.bernoulli(k[2], jnp.where(hard, 0.5 + eps, 0.5))
    acc = jnp.sum(z * flag) / jnp.sum(flag)
    se = float(np.sqrt(0.25 / f(jnp.sum(flag))))
    return [
        Row("thm3.dilution", "Thm 3 / A.6 (note 9.6)", f"flagged-label accuracy = 1/2 + eps alpha tau/(alpha tau + (1-alpha) phi) (alpha={alpha}, tau={tau}, phi={phi}, eps={eps})",
            f(M.diluted_vote_accuracy(alpha, eps, tau, phi)), f(acc), f"Monte Carlo, {N} draws (SE {se:.2g})", 4 * se),
        Row("thm3.minimality", "Thm 3", "draws with a noisy flagger (tau=0.8) >= draws with the exact oracle",
            f(M.oracle_queries(alpha, eps, 1.0, 0.01, 0.8)), f(M.oracle_queries(alpha, eps, 1.0, 0.01)), "closed forms", 0.0, kind="bound"),
        Row("thm3.dilution_cost", "Thm 3 (note 9.6)", "draws using every flagged label >= Theorem 3's count T/(alpha tau)",
            f(M.diluted_flagger_queries(alpha, eps, 1.0, 0.01, tau, phi)), f(M.oracle_queries(alpha, eps, 1.0, 0.01, tau)),
            "closed forms", 0.0, kind="bound", note="Theorem 3 under-counts by the factor 1/p, p = hit fraction"),
    ]


@check(('prop7', 'prop8'))
def heterogeneous(key):
    w = jax.random.dirichlet(key, jnp.ones(7))
    e = jnp.linspace(0.02, 0.4, 7)
    alpha = 0.15
    # independent: KL of the joint law of (x, Z) over the hard contexts by enumeration
    joint = alpha * jnp.sum(w * M.bernoulli_kl(0.5 + e, 0.5 - e))
    alphas = alpha * w
    return [
        Row("prop7.exponent", "Prop 7 (B.1)", "per-round KL = alpha E[kappa(eps(X)) | hard]",
            f(alpha * M.heterogeneous_kappa(e, w)), f(joint), "enumeration of (x, Z)", 1e-14),
        Row("prop8.exponent", "Prop 8 (B.2)", "per-round KL = sum_j alpha_j kappa_j",
            f(M.mixture_exponent(alphas, e)), f(joint), "enumeration of (x, Z)", 1e-14),
        Row("prop7.jensen", "Prop 7 (B.1)", "K >= kappa(E[eps | hard]) (convexity: a constant-eps fit understates the exponent)",
            f(M.heterogeneous_kappa(e, w)), f(M.kappa(jnp.sum(w * e))), "closed forms", 0.0, kind="bound"),
    ]


@check(('B8',))
def ratings(key):
    delta, sd, N = 0.1, 1.0, 400000
    m, s2 = M.gaussian_rating_llr(delta, sd)
    r = delta + sd * jax.random.normal(key, (N,))
    llr = 2 * delta * r / sd**2
    mc, se = f(jnp.mean(llr)), f(jnp.std(llr)) / np.sqrt(N)
    T = float(np.ceil(10.0 / f(m)))  # T m ~ 10
    exact = f(M.gaussian_rating_bayes_error(T, delta, sd))
    return [
        Row("B8.kl_correct", "B.8 / A.8 (corrected)", f"per-hit KL of Gaussian ratings N(+-{delta}, {sd}^2) = mean LLR m",
            f(M.rating_kl_per_hit(m)), mc, f"Monte Carlo mean LLR (SE {se:.2g})", 4 * se),
        Row("B8.kl_paper", "B.8 as written", "per-hit KL = m^2/(2 sigma^2)",
            f(M.rating_kl_per_hit_paper(m, s2)), mc, "Monte Carlo mean LLR", 4 * se, erratum=True,
            note="equals m/4 for Gaussian ratings: 4x too small"),
        Row("B8.bound_correct", "B.8 (corrected)", f"exact Bayes error with T={T:g} ratings >= exp(-T m)/4",
            f(M.bretagnolle_huber(T * m)), exact, "exact normal CDF", 0.0, kind="bound", direction=">="),
        Row("B8.bound_paper", "B.8 as written", f"exact Bayes error with T={T:g} ratings >= exp(-T m^2/(2 sigma^2))/4",
            f(M.bretagnolle_huber(T * M.rating_kl_per_hit_paper(m, s2))), exact, "exact normal CDF", 0.0,
            kind="bound", direction=">=", erratum=True, note="the paper's lower bound exceeds the achievable error"),
    ]


@check(('B5', 'D7'))
def sprt(key):
    eps, delta, reps = 0.1, 0.01, 20000
    ex = M.sprt_exact(eps, delta)
    b = f(M.sprt_threshold(delta))
    L = 2 * np.arctanh(2 * eps)

    def one(k):
        def cond(c):
            s, t, _ = c
            return jnp.abs(s) * L < b - 1e-12
        def body(c):
            s, t, kk = c
            kk, sub = jax.random.split(kk)
            up = jax.random.bernoulli(sub, 0.5 + eps)
            return s + jnp.where(up, 1, -1), t + 1, kk
        s, t, _ = jax.lax.while_loop(cond, body, (0, 0, k))
        return t, s < 0
    t, wrong = jax.vmap(one)(jax.random.split(key, reps))
    mt, se = f(jnp.mean(t)), f(jnp.std(t)) / np.sqrt(reps)
    me, see = f(jnp.mean(wrong)), np.sqrt(f(ex["error"]) * (1 - f(ex["error"])) / reps)
    routed = f(M.sequential_queries(0.05, 0.5, eps, delta))
    return [
        Row("B5.sprt_hits", "B.5 (exact)", f"SPRT expected hits (gambler's ruin) vs Monte Carlo, eps={eps}, delta={delta}",
            f(ex["expected_hits"]), mt, f"Monte Carlo, {reps} runs (SE {se:.2g})", 4 * se),
        Row("B5.sprt_error", "B.5 (exact)", "SPRT error probability (gambler's ruin) vs Monte Carlo; <= delta",
            f(ex["error"]), me, f"Monte Carlo (SE {see:.2g})", 4 * see),
        Row("B5.wald_paper", "B.5 as written", "E[T] <= log((1-delta)/delta)/kappa(eps)",
            f(M.sprt_expected_hits_paper(eps, delta)), f(ex["expected_hits"]), "exact gambler's ruin", 0.0,
            kind="bound", erratum=True, note="Wald's approximation drops the overshoot"),
        Row("B5.wald_corrected", "B.5 (corrected)", "E[T] <= (log((1-delta)/delta) + L)/kappa(eps), L = 2 atanh(2 eps) the largest overshoot",
            (b + L) / f(M.kappa(eps)), f(ex["expected_hits"]), "exact gambler's ruin", 0.0, kind="bound"),
        Row("D7.routed", "D.7 / B.5 with routing", "expected draws = E[T_SPRT]/(alpha tau) (alpha=0.05, tau=0.5)",
            routed, f(ex["expected_hits"]) / (0.05 * 0.5), "closed forms", 1e-9, relative=True),
    ]


@check(('B7',))
def score_flagger_np(key):
    K, beta = 8, 0.35
    k1, k2, k3 = jax.random.split(key, 3)
    w = np.asarray(jax.random.dirichlet(k1, jnp.ones(K)))
    hard = np.asarray(jax.random.uniform(k2, (K,)))
    u = hard + 0.0  # MLR: score monotone in P(hard | x)
    res = M.score_flagger(u, hard, w, beta)
    alpha = float(np.sum(w * hard))
    best = 0.0
    for mask in itertools.product([0, 1], repeat=K):
        m = np.array(mask, float)
        if np.sum(w * m) <= beta + 1e-15:
            best = max(best, float(np.sum(w * hard * m)) / alpha)
    keep_rate = float(np.sum(w * np.asarray(res["keep"])))
    return [
        Row("B7.optimal", "B.7", "threshold rule's TPR >= every deterministic rule with keep rate <= beta (2^8 subsets)",
            f(res["tau"]), best, "exact enumeration", 0.0, kind="bound"),
        Row("B7.keep_rate", "B.7", f"threshold rule keeps exactly beta = {beta}", beta, keep_rate, "enumeration", 1e-12),
    ]
