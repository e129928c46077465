"""Checks of the exact Bayes errors and Chernoff exponents (theory/sharp.py)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from murphyjax.theory import murphy as M
from murphyjax.theory import sharp as S
from murphyjax.theory.checks._core import Row, check, f


def _simulate(key, protocol, n, alpha, eps, tau=1.0, phi=0.0, reps=200000):
    """Monte Carlo sign error of each protocol under w = + (ties broken by a coin)."""
    k = jax.random.split(key, 4)
    hard = jax.random.bernoulli(k[0], alpha, (reps, n))
    if protocol == "all":
        z = jax.random.bernoulli(k[1], 0.5 + eps, (reps, n))
        vote = jnp.sum(jnp.where(hard, 2 * z - 1, 0), axis=1)
    elif protocol == "all_blind":
        z = jax.random.bernoulli(k[1], jnp.where(hard, 0.5 + eps, 0.5))
        vote = jnp.sum(2 * z - 1, axis=1)
    else:  # flagged
        keep = jax.random.bernoulli(k[2], jnp.where(hard, tau, phi))
        z = jax.random.bernoulli(k[1], jnp.where(hard, 0.5 + eps, 0.5))
        vote = jnp.sum(jnp.where(keep, 2 * z - 1, 0), axis=1)
    coin = jax.random.bernoulli(k[3], 0.5, (reps,))
    return jnp.mean(jnp.where(vote < 0, 1.0, jnp.where(vote == 0, coin * 1.0, 0.0)))


@check(('sharp',))
def exact_bayes_errors(key):
    rows = []
    n, alpha, eps = 60, 0.2, 0.15
    for i, (proto, kw) in enumerate([("all", {}), ("all_blind", {}), ("flagged", {"tau": 0.8, "phi": 0.1})]):
        exact = f(S.bayes_error(proto, n, alpha, eps, **kw))
        mc = f(_simulate(jax.random.fold_in(key, i), proto, n, alpha, eps, **kw))
        se = math.sqrt(exact * (1 - exact) / 200000)
        rows.append(Row(f"sharp.{proto}", "Thm 1 (exact, sharper)", f"exact Bayes error of the '{proto}' protocol (n={n}, alpha={alpha}, eps={eps}) vs Monte Carlo (SE {se:.1g})",
                        exact, mc, "Monte Carlo, 2e5 transcripts", 4 * se))
    worst = -math.inf
    for n_ in (10, 100, 1000):
        for proto in ("all", "all_blind", "flagged"):
            a = np.array([0.01, 0.1, 0.3])[:, None]
            e = np.array([0.05, 0.2, 0.4])[None, :]
            err = np.asarray(S.bayes_error(proto, n_, a, e, tau=0.7, phi=0.2))
            worst = max(worst, float(np.max(np.asarray(M.sign_error_lower_bound(n_, a, e)) - err)))
    rows.append(Row("sharp.bound_holds", "Thm 1 / Prop 5", "every protocol's exact error >= exp(-n alpha kappa)/4 on 81 (protocol, n, alpha, eps) (largest bound - error)",
                    0.0, worst, "exact binomial sums", 0.0, kind="bound"))
    a_, e_ = 0.1, 0.1
    n1, n2 = 10000, 20000
    slope = (math.log(f(S.bayes_error("all", n1, a_, e_))) - math.log(f(S.bayes_error("all", n2, a_, e_)))) / (n2 - n1)
    ex = S.error_exponents(a_, e_)
    rows += [
        Row("sharp.exponent", "Chernoff (sharper than Thm 1)", f"decay rate of the exact error between n={n1} and {n2} = -log(1 - alpha(1 - e^-C)) (alpha={a_}, eps={e_}; relative)",
            f(ex["achievable"]), slope, "exact binomial sums", 0.03, relative=True),
        Row("sharp.loose", "Thm 1 (looseness)", "the paper's exponent alpha kappa exceeds the achievable one (ratio ~ 4 for small eps)",
            f(ex["achievable"]), f(ex["paper_bound"]), "closed forms", 0.0, kind="bound", direction=">=",
            note=f"ratio {f(ex['paper_bound']) / f(ex['achievable']):.2f}"),
        Row("sharp.chernoff", "Chernoff information", "C(eps) = -(1/2) log(1 - 4 eps^2) = max_s -log sum p^s q^(1-s) (grid over s)",
            f(S.chernoff_information(0.2)), float(np.max([-math.log(0.7**s * 0.3 ** (1 - s) + 0.3**s * 0.7 ** (1 - s)) for s in np.linspace(0, 1, 10001)])),
            "grid over s", 1e-12),
    ]
    return rows
