"""Heavy- vs light-tailed proxy error on a many-armed bandit (Kwa, Thomas, Garriga-Alonso 2024).

One context, N arms, base policy pi_0 uniform. Each arm has a true utility U ~ N(0, 1) and a
proxy P = U + X with an independent error X: light-tailed X ~ N(0, scale^2), or heavy-tailed
X = scale * t_df (Student-t; no moment generating function, so the population tilt
pi_0 exp(lam P) does not exist for any lam > 0: ``theory.heavy_tail_tilt``). Optimisation by

* best-of-n: exact law on the sorted arms, pi_n(j) = F_j^n - F_{j-1}^n (``theory.bon_probs``),
* tilting pi_lam ∝ pi_0 exp(lam P) on the N arms (exists on any finite set; for the heavy tail it
  is not the finite-N version of any population object),

and the true utility E[U] is read off against KL(pi || pi_0). Kwa et al.'s Theorems 5-6: with a
heavy-tailed error the utility of the selected arm returns to E[U] = 0 as the pressure grows
(catastrophic Goodhart); with a light (normal) error it grows without bound.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from murphyjax import theory as T
from murphyjax.theory import validate as V

F64 = jnp.float64
ERRORS = ("normal", "student_t")


def tail_bandit(key, n_arms: int, error: str = "normal", *, df: float = 1.5, scale: float = 1.0):
    """(U, P) of N arms sorted by increasing proxy P = U + X (float64)."""
    if error not in ERRORS:
        raise ValueError(f"error must be one of {', '.join(ERRORS)}; got {error!r}")
    if int(n_arms) != n_arms or n_arms < 2:
        raise ValueError(f"n_arms must be an integer >= 2; got {n_arms!r}")
    V.positive("df", df)
    V.positive("scale", scale)
    ku, kx = jax.random.split(key)
    U = jax.random.normal(ku, (n_arms,), F64)
    X = scale * (jax.random.normal(kx, (n_arms,), F64) if error == "normal" else jax.random.t(kx, df, (n_arms,), F64))
    P = U + X
    order = jnp.argsort(P)
    return U[order], P[order]


def bon_curve(U, P, ns):
    """Best-of-n on arms sorted by P: E[U], E[P] and the exact KL(pi_n || pi_0) for each n (dict of (len(ns),))."""
    N = U.shape[0]
    base = jnp.full((N,), 1.0 / N, F64)
    out = {"n": np.asarray(ns, float), "true": [], "proxy": [], "kl": []}
    for n in ns:
        q = T.bon_probs(base, int(n))
        out["true"].append(float(q @ U))
        out["proxy"].append(float(q @ P))
        out["kl"].append(float(T.bon_kl(base, int(n))))
    return {k: np.asarray(v, float) for k, v in out.items()}


def tilt_curve(U, P, lams):
    """Tilting pi_lam ∝ pi_0 exp(lam P) on the N arms: E[U], E[P], KL(pi_lam || pi_0) for each lam."""
    N = U.shape[0]
    t = T.tilt(jnp.full((N,), -np.log(N), F64), P, jnp.asarray(lams, F64))
    return {"lam": np.asarray(lams, float), "true": np.asarray(t.mean(U)), "proxy": np.asarray(t.mean(P)), "kl": np.asarray(t.kl())}


def conditional_limit(P, ns, error: str, *, df: float = 1.5, scale: float = 1.0):
    """Kwa et al.'s conditioning curve at the BoN-matched threshold: E[U | U + X >= t_n], t_n the
    (1 - 1/n) quantile of the arms' proxies (``theory.conditional_true_mean``; a reference, not a law of BoN).
    P: (N,) proxies, or (S, N) for S bandits (then t_n is the median over them of their quantiles)."""
    P = np.asarray(P).reshape(-1, np.shape(P)[-1])
    t = np.median(np.quantile(P, 1.0 - 1.0 / np.asarray(ns, float), axis=1), axis=1)
    return np.asarray(T.conditional_true_mean(jnp.asarray(t), error, error_scale=scale, df=df))
