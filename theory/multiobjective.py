"""The multi-objective law (paper Section 4.6, eq. (1)) and composite objectives (B.6).

Objectives g_j(x, a), j = 1..J, over a finite context set with law mu and finite actions.
On a subset S ⊆ X_hard where the optimal actions a^(j)(x) disagree, no single action serves
all objectives, so for any policy pi

    sum_j (E[g_j(X, pi^(j)(X))] - E[g_j(X, pi(X))]) >= c * alpha_S * min_j m_j.      (1)

The paper states c = 1 for three pairwise-disagreeing objectives; its own argument gives
c = 2 (at each x in S a single action matches at most one of the three optima, so at least
two terms pay their margin: paper note 9.12). B.6 generalises to c = k, the least number of
objectives any single action misses on S. Eq. (1) needs three actions (m_j is defined over
"the two non-optimal actions").
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from murphyjax.theory import validate as V


def _objectives(g):
    g = V.finite("g", g)
    if g.ndim != 3:
        raise ValueError(f"g must have shape (J objectives, K contexts, A actions); got {g.shape}")
    return g


def optimal_actions(g):
    """a^(j)(x) = argmax_a g_j(x, a): shape (J, K). Ties resolve to the first action."""
    return jnp.argmax(_objectives(g), axis=-1)


def regrets(g, mu, policy):
    """regret_j = E_mu[g_j(X, pi^(j)(X))] - E_mu[sum_a pi(a|X) g_j(X, a)], shape (J,).

    Args:
      g: (J, K, A) objectives; mu: (K,) context law; policy: (K, A) action probabilities.
    """
    g = _objectives(g)
    mu = V.prob_vector("mu", mu)
    pi = V.prob_vector("policy", policy)
    if mu.shape != (g.shape[1],) or pi.shape[-2:] != g.shape[1:]:
        raise ValueError(f"shapes must be g (J, K, A), mu (K,), policy (K, A); got {g.shape}, {mu.shape}, {pi.shape}")
    best = jnp.max(g, axis=-1)                                    # (J, K)
    got = jnp.einsum("jka,...ka->...jk", g, pi)                   # (..., J, K)
    return jnp.sum(mu * (best - got), axis=-1)


def disagreement_set(g, hard=None):
    """S: contexts (inside the hard set, if given) where the J optimal actions are pairwise distinct."""
    a = np.asarray(optimal_actions(g))
    J = a.shape[0]
    distinct = np.ones(a.shape[1], bool)
    for i in range(J):
        for j in range(i + 1, J):
            distinct &= a[i] != a[j]
    if hard is not None:
        distinct &= np.asarray(V.probability("hard", hard)) > 0.5
    return distinct


def margins(g, S):
    """m_j = min_{x in S} min_{a != a^(j)(x)} (g_j(x, a^(j)(x)) - g_j(x, a)), shape (J,)."""
    g = np.asarray(_objectives(g))
    S = np.asarray(S, bool)
    if not S.any():
        raise ValueError("S must contain at least one context (no context where the optima disagree)")
    srt = np.sort(g[:, S, :], axis=-1)
    return jnp.asarray(np.min(srt[..., -1] - srt[..., -2], axis=-1))


def cover_number(g, S):
    """k = min over x in S and actions a of #{j : a^(j)(x) != a} (B.6's 'differs across k indices')."""
    a = np.asarray(optimal_actions(g))[:, np.asarray(S, bool)]     # (J, |S|)
    A = np.asarray(g).shape[-1]
    miss = np.stack([(a != act).sum(0) for act in range(A)])      # (A, |S|)
    return int(miss.min())


def multiobjective_bound(g, mu, hard=None, constant: str = "proof"):
    """Right-hand side of eq. (1) / B.6: c * alpha_S * min_j m_j.

    Args:
      g: (J, K, A) objectives (eq. (1): J = 3 and A = 3).
      mu: (K,) context law.
      hard: optional hard-set indicator; S is restricted to it.
      constant: "paper" (c = 1, eq. (1) as stated), "proof" (c = k from ``cover_number``:
        2 for three pairwise-disagreeing objectives) .
    Returns dict with ``bound``, ``alpha_S``, ``margins``, ``k`` and ``per_objective`` (bound / J:
    at least one objective loses this much).
    """
    g = _objectives(g)
    mu = V.prob_vector("mu", mu)
    if constant not in ("paper", "proof"):
        raise ValueError(f"constant must be 'paper' or 'proof'; got {constant!r}")
    if constant == "paper" and g.shape[0] != 3 or constant == "paper" and g.shape[2] != 3:
        raise ValueError(f"eq. (1) needs 3 objectives and 3 actions (paper note 9.12); got g of shape {g.shape}")
    S = disagreement_set(g, hard)
    m = margins(g, S)
    alpha_s = jnp.sum(jnp.where(jnp.asarray(S), mu, 0.0))
    k = 1 if constant == "paper" else cover_number(g, S)
    bound = k * alpha_s * jnp.min(m)
    return {"bound": bound, "alpha_S": alpha_s, "margins": m, "k": k, "per_objective": bound / g.shape[0]}
