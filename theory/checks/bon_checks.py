"""Checks of best-of-n and the Gao et al. forms (related-theory.md sections 1-2)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from murphyjax.theory import bon as B
from murphyjax.theory.checks._core import Row, check, f


@check(('bon', 'gao'))
def best_of_n(key):
    rows = [
        Row("bon.kl_1000", "Stiennon et al. / Gao 1.2", "log n - (n-1)/n at n = 1000 vs the published 5.9088 nats (4 decimals)", 5.9088, f(B.bon_kl_bound(1000)), "published value", 5e-5),
        Row("bon.kl_60000", "Gao 1.2", "log n - (n-1)/n at n = 60000 vs the published 10.0021 nats (4 decimals)", 10.0021, f(B.bon_kl_bound(60000)), "published value", 5e-5),
    ]
    k = jax.random.split(key, 4)
    K, n, N = 6, 4, 400000
    p = jax.random.dirichlet(k[0], jnp.ones(K))
    draws = jax.random.categorical(k[1], jnp.log(p), shape=(N, n)).max(axis=1)
    emp = jnp.bincount(draws, length=K) / N
    pn = B.bon_probs(p, n)
    se = f(jnp.max(jnp.sqrt(pn * (1 - pn) / N)))
    rows.append(Row("bon.law", "Beirami et al. 2024", f"pi_n = F_j^n - F_(j-1)^n vs Monte Carlo (n={n}, K={K}, max |diff|, max SE {se:.1g})",
                    0.0, f(jnp.max(jnp.abs(emp - pn))), "Monte Carlo, 4e5 draws", 5 * se))
    # ties: proxy with repeated values, random tie-breaking
    proxy = jnp.array([0.0, 1.0, 1.0, 2.0, 0.0, 3.0])
    u = jax.random.uniform(k[2], (N, n))
    idx = jax.random.categorical(k[3], jnp.log(p), shape=(N, n))
    keyv = proxy[idx] + 1e-3 * u  # random tie-break
    pick = jnp.take_along_axis(idx, jnp.argmax(keyv, axis=1)[:, None], 1)[:, 0]
    emp_t = jnp.bincount(pick, length=K) / N
    pt = B.bon_probs(p, n, proxy=proxy)
    rows.append(Row("bon.law_ties", "Beirami et al. 2024", "tie-aware pi_n (ties split in proportion to pi_ref) vs Monte Carlo with random tie-breaks",
                    0.0, f(jnp.max(jnp.abs(emp_t - pt))), "Monte Carlo, 4e5 draws", 5 * se))
    # KL <= bound on random bases; equality in the continuous limit; binary counterexample
    worst = -math.inf
    for i in range(20):
        q = jax.random.dirichlet(jax.random.fold_in(key, 100 + i), jnp.ones(8))
        for m in (2, 5, 30):
            worst = max(worst, f(B.bon_kl(q, m)) - f(B.bon_kl_bound(m)))
    fine = jnp.full((100000,), 1e-5)
    rows += [
        Row("bon.kl_bound", "Beirami et al. 2024", "exact KL(pi_n||pi_ref) <= log n - (n-1)/n on 60 random (base, n) (largest excess)", 0.0, worst, "exact", 0.0, kind="bound"),
        Row("bon.kl_continuum", "Beirami et al. 2024", "equality in the continuous limit: 1e5 equal atoms, n = 16", f(B.bon_kl_bound(16)), f(B.bon_kl(fine, 16)), "exact", 1e-3),
        Row("bon.binary", "Beirami et al. 2024", "binary uniform outcomes: KL <= log 2 while the formula at n = 1000 is 5.91", math.log(2), f(B.bon_kl(jnp.array([0.5, 0.5]), 1000)), "exact", 0.0, kind="bound"),
    ]
    # expected maximum of normals
    exact = {2: 1 / math.sqrt(math.pi), 3: 1.5 / math.sqrt(math.pi), 4: 3 / math.sqrt(math.pi) * (0.5 + math.asin(1 / 3) / math.pi),
             5: 2.5 / math.sqrt(math.pi) * (0.5 + 3 * math.asin(1 / 3) / math.pi)}
    em = B.expected_max_normal(jnp.array(list(exact)))
    rows.append(Row("bon.max_normal", "related-theory 2.2", "E[max of n N(0,1)] for n = 2..5 vs closed forms (max |diff|)",
                    0.0, float(np.max(np.abs(np.asarray(em) - np.array(list(exact.values()))))), "closed forms", 1e-10))
    z = jax.random.normal(jax.random.fold_in(key, 7), (200000, 64)).max(axis=1)
    se64 = f(jnp.std(z)) / math.sqrt(200000)
    rows.append(Row("bon.max_normal_64", "related-theory 2.2", f"E[max of 64 N(0,1)] = 2.3437335 vs Monte Carlo (SE {se64:.1g})",
                    f(B.expected_max_normal(64)), f(jnp.mean(z)), "Monte Carlo", 4 * se64))
    # win rate
    wr = B.bon_win_rate_exact(p, n)
    ref = jax.random.categorical(jax.random.fold_in(key, 8), jnp.log(p), shape=(N,))
    win = jnp.mean(jnp.where(draws > ref, 1.0, jnp.where(draws == ref, 0.5, 0.0)))
    sew = math.sqrt(0.25 / N)
    rows += [
        Row("bon.win_rate", "Beirami et al. 2024", "exact win rate of pi_n vs pi_ref (ties 1/2) vs Monte Carlo", f(wr), f(win), "Monte Carlo", 4 * sew),
        Row("bon.win_bound", "Beirami et al. 2024", "win rate <= n/(n+1)", f(B.bon_win_rate(n)), f(wr), "exact", 0.0, kind="bound"),
    ]
    # Nakano unbiased estimator: its mean over many sample sets equals the exact best-of-n mean
    vals = jnp.arange(K, dtype=jnp.float64) ** 1.5
    Nsamp = 32
    S = jnp.sort(jax.random.categorical(jax.random.fold_in(key, 9), jnp.log(p), shape=(20000, Nsamp)), axis=1)
    est = jax.vmap(lambda row: B.bon_unbiased_estimate(vals[row], n))(S)
    see = f(jnp.std(est)) / math.sqrt(20000)
    rows.append(Row("bon.nakano", "Nakano et al. 2021 (Gao 1.2)", f"E[unbiased best-of-{n} estimate from N={Nsamp}] = exact best-of-n mean",
                    f(jnp.sum(pn * vals)), f(jnp.mean(est)), f"Monte Carlo, 2e4 sample sets (SE {see:.1g})", 4 * see))
    # Gao forms: the least-squares fit recovers the generating coefficients
    d = jnp.linspace(0.05, 4.0, 40)
    fb = B.fit_gao(d, B.gao_bon(d, 0.6, 0.12), "bon")
    fr = B.fit_gao(d, B.gao_rl(d, 0.35, 0.15), "rl")
    rows += [
        Row("gao.fit_bon", "Gao et al. 1.1", "fit of d(a - b d) recovers (a, b) = (0.6, 0.12) (max |diff|)", 0.0, max(abs(fb["a"] - 0.6), abs(fb["b"] - 0.12)), "least squares", 1e-12),
        Row("gao.fit_rl", "Gao et al. 1.1", "fit of d(a - b log d) recovers (a, b) = (0.35, 0.15)", 0.0, max(abs(fr["a"] - 0.35), abs(fr["b"] - 0.15)), "least squares", 1e-12),
        Row("gao.peak_bon", "Gao et al. 1.1 (derived)", "peak of d(a - b d) at d* = a/(2b) (value a^2/(4b)) vs a dense grid",
            fb["peak"]["value"], f(jnp.max(B.gao_bon(jnp.linspace(0, 10, 100001), 0.6, 0.12))), "grid", 1e-9),
    ]
    return rows
