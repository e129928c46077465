"""The achievable region of the three regrets of eq. (1) over all policies (paper Section 4.6, B.6).

For objectives g_j (J = 3) over K contexts and A = 3 actions, a (stochastic) policy pi has
regret_j(pi) = sum_x mu(x) sum_a pi(a | x) R_j(x, a) with R_j(x, a) = g_j(x, a^(j)(x)) - g_j(x, a).
The set of achievable regret vectors is the Minkowski sum over contexts of the triangles
mu(x) conv{R(x, a) : a} -- a convex polytope (mixtures of policies add nothing new: a mixture of
policies is the policy of their mixed action laws). It is computed exactly through its support
function h(w) = sum_x min_a w . R(x, a) (w >= 0 gives the Pareto-efficient boundary), with the
two numbers eq. (1) is about:

  min_pi sum_j regret_j = sum_x mu(x) min_a sum_j R_j(x, a)     (a per-context minimum),
  min_pi max_j regret_j                                        (a linear program).

Eq. (1) bounds the first from below by alpha_S min_j m_j; its argument gives 2 alpha_S min_j m_j
(paper note 9.12). ``tight_three_objective`` builds an environment where 2 alpha_S m is attained.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from murphyjax.bandits import envs
from murphyjax.theory import validate as V


def regret_table(env: envs.ThreeObjective) -> np.ndarray:
    """mu(x) R_j(x, a) as an array (K, A, J) (float64)."""
    g = np.asarray(env.g, np.float64)  # (J, K, A)
    R = g.max(-1, keepdims=True) - g
    return np.transpose(R, (1, 2, 0)) * np.asarray(env.mu, np.float64)[:, None, None]


def policy_regrets(Rw: np.ndarray, policy) -> np.ndarray:
    """(..., J) regrets of policies (..., K, A) from the weighted table (K, A, J)."""
    return np.einsum("kaj,...ka->...j", Rw, np.asarray(policy, np.float64))


def min_sum_regret(Rw: np.ndarray) -> float:
    """min over all policies of sum_j regret_j (exact: choose the best action per context)."""
    return float(Rw.sum(-1).min(-1).sum())


def min_max_regret(Rw: np.ndarray) -> float:
    """min over all (stochastic) policies of max_j regret_j, by linear programming (HiGHS)."""
    from scipy.optimize import linprog

    K, A, J = Rw.shape
    nv = K * A + 1  # pi(a | x) flattened, then the epigraph variable
    c = np.zeros(nv)
    c[-1] = 1.0
    A_ub = np.concatenate([Rw.reshape(K * A, J).T, -np.ones((J, 1))], axis=1)
    A_eq = np.zeros((K, nv))
    for k in range(K):
        A_eq[k, k * A:(k + 1) * A] = 1.0
    res = linprog(c, A_ub=A_ub, b_ub=np.zeros(J), A_eq=A_eq, b_eq=np.ones(K), bounds=[(0, None)] * nv, method="highs")
    if not res.success:
        raise RuntimeError(f"linear program failed: {res.message}")
    return float(res.fun)


def support_points(Rw: np.ndarray, weights) -> np.ndarray:
    """Regret vectors of the policies minimising w . regret for each weight w (M, J) >= 0: exact
    points of the region's Pareto boundary (each is a deterministic policy). Returns (M, J)."""
    W = np.asarray(weights, np.float64)
    if W.ndim != 2 or W.shape[1] != Rw.shape[2] or (W < 0).any():
        raise ValueError(f"weights must be a non-negative (M, {Rw.shape[2]}) array; got shape {W.shape}")
    best = np.argmin(np.einsum("kaj,mj->mka", Rw, W), axis=-1)  # (M, K)
    return np.take_along_axis(Rw[None], best[..., None, None], axis=2)[:, :, 0, :].sum(1)


def simplex_grid(steps: int) -> np.ndarray:
    """All weights (i, j, k) / steps with i + j + k = steps (the 2-simplex)."""
    pts = [(i, j, steps - i - j) for i in range(steps + 1) for j in range(steps + 1 - i)]
    return np.asarray(pts, np.float64) / steps


def random_policies(seed: int, K: int, n: int, deterministic: bool) -> np.ndarray:
    """n random policies (n, K, 3) from a NumPy generator seeded with ``seed``: uniformly random
    actions, or Dirichlet(1) action laws (samples of the region's interior, no compilation)."""
    rng = np.random.default_rng(seed)
    if deterministic:
        return np.eye(3)[rng.integers(0, 3, (n, K))]
    return rng.dirichlet(np.ones(3), (n, K))


def tight_three_objective(n_contexts: int, alpha_S: float, margin: float) -> envs.ThreeObjective:
    """An environment where eq. (1)'s proof constant is attained: min_pi sum_j regret_j = 2 alpha_S m.

    On S (a third of the contexts, mass alpha_S) objective j scores margin on action j and 0 on the
    others (pairwise-disagreeing optima, every margin exactly m); off S all three objectives score 1
    on action 0 and 0 elsewhere (they agree, so regret 0 is possible there).
    """
    V.alpha(alpha_S, "alpha_S")
    V.interval("margin", margin, 0.0, 1.0, hi_closed=True)
    if int(n_contexts) != n_contexts or n_contexts < 2:
        raise ValueError(f"n_contexts must be an integer >= 2; got {n_contexts!r}")
    n_s = max(1, n_contexts // 3)
    S = (np.arange(n_contexts) < n_s).astype(np.float64)
    mu = np.where(S > 0, alpha_S / n_s, (1 - alpha_S) / (n_contexts - n_s))
    g = np.zeros((3, n_contexts, 3))
    for j in range(3):
        g[j, :, j] = np.where(S > 0, margin, 0.0)
        g[j, :, 0] = np.where(S > 0, g[j, :, 0], 1.0)
    return envs.ThreeObjective(jnp.asarray(mu), jnp.asarray(S), jnp.asarray(g))
