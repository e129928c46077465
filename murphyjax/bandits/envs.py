"""Environments of the bandit laboratory (arXiv:2509.05381 v3, Sections 2.1, 3.1, 4.3 and eq. (1)).

Three environments, all plain pytrees (NamedTuples of arrays) with pure functions over them:

* ``TwoWorld`` -- the abstract two-world environment of Section 2.1: a finite context set with
  law ``mu``, a hard set of mass ``alpha``, finite actions, rewards in [0, 1] that agree on easy
  contexts and differ on hard ones. The separation gamma and every value are exact sums.
* ``Mixture`` -- the Gaussian-mixture environment of Section 3.1. Choices the paper leaves open
  (Section 9 of the working notes), made here and stated once:
    - hardness is a latent label z with P(z = 1) = alpha (note 9.7); x | z ~ N(z mu_h, I_d);
    - theta, upsilon, xi are orthonormal (xi is a nuisance direction); the hard-component mean is
      ``mu_h = hard_mean[0] theta + hard_mean[1] upsilon + hard_mean[2] xi``, default (1, 0, 3):
      hard contexts sit 3 sd out along xi (so an x-only flagger can find them) and 1 sd along
      theta (so a proxy that learned theta on easy contexts is *more* confident on hard ones,
      which is the positive Cov(H, s_hat) behind Proposition 1);
    - rewards: r_w(x, a_1) = 1/2 + s Delta_w(x) / 2, r_w(x, a_0) = 1/2 - s Delta_w(x) / 2 with
      Delta_+(x) = sign(theta^T x) on easy and sign(upsilon^T x) on hard contexts, Delta_- the
      same with the sign flipped on hard contexts, sign(0) := +1, reward scale s in (0, 1]
      (default 1, rewards in {0, 1}). Then gamma = alpha s exactly (note 9.8).
  Arrays live in ``d_max`` coordinates with the first ``d`` active, so cells of different
  dimension share one shape (``d`` may be traced under ``vmap``).
* ``ThreeObjective`` -- the three-action multi-objective environment of eq. (1) (note 9.12).

Simulator arrays are float32 (explicit dtypes; murphyjax turns on x64 globally); exact sums
over finite environments are float64.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from murphyjax.theory import validate as V

F32 = jnp.float32


# --------------------------------------------------------------------------- abstract two-world
class TwoWorld(NamedTuple):
    """Finite two-world environment (Section 2.1). ``r_plus``/``r_minus`` are (K, A) rewards."""

    mu: jax.Array
    hard: jax.Array
    r_plus: jax.Array
    r_minus: jax.Array


def two_world(mu, hard, r_plus, r_minus) -> TwoWorld:
    """Build and validate a finite two-world environment.

    Args:
      mu: context law, (K,) probability vector.
      hard: (K,) 0/1 indicator of X_hard; alpha = sum mu * hard must lie in (0, 1).
      r_plus, r_minus: (K, A) rewards in [0, 1], equal on easy contexts; on hard contexts the
        optimal actions of the two worlds must differ (otherwise gamma = 0).
    """
    mu = V.prob_vector("mu", mu)
    hard = V.probability("hard", hard)
    rp = V.probability("r_plus", r_plus)
    rm = V.probability("r_minus", r_minus)
    V.same_shape(r_plus=rp, r_minus=rm)
    if rp.ndim != 2 or rp.shape[0] != mu.shape[-1] or hard.shape != mu.shape:
        raise ValueError(f"need mu (K,), hard (K,), rewards (K, A); got {mu.shape}, {hard.shape}, {rp.shape}")
    h = np.asarray(hard)
    if not np.isin(h, (0.0, 1.0)).all():
        raise ValueError("hard must be a 0/1 indicator")
    easy = h == 0
    if not np.allclose(np.asarray(rp)[easy], np.asarray(rm)[easy], atol=0, rtol=0):
        raise ValueError("r_plus and r_minus must agree on easy contexts (Section 2.1)")
    V.alpha(float(np.sum(np.asarray(mu) * h)))
    env = TwoWorld(mu, hard, rp, rm)
    if float(separation(env)) <= 0:
        raise ValueError("the two worlds' optimal actions must differ on some hard context (gamma > 0)")
    return env


def optimal_actions(r):
    """pi^w(x) = argmax_a r_w(x, a) (lowest index on ties)."""
    return jnp.argmax(r, axis=-1)


def value(mu, r, policy):
    """V(pi) = sum_x mu(x) sum_a pi(a | x) r(x, a); ``policy`` is (K, A) probabilities or (K,) actions."""
    policy = jnp.asarray(policy)
    if policy.ndim == r.ndim - 1:
        policy = jax.nn.one_hot(policy, r.shape[-1], dtype=r.dtype)
    return jnp.sum(mu * jnp.sum(policy * r, axis=-1), axis=-1)


def separation(env: TwoWorld):
    """gamma = E_mu[|r_+(x, pi^+(x)) - r_+(x, pi^-(x))| 1{x in X_hard}] (Section 2.1), exactly."""
    a_p, a_m = optimal_actions(env.r_plus), optimal_actions(env.r_minus)
    rp = env.r_plus
    gap = jnp.take_along_axis(rp, a_p[:, None], 1)[:, 0] - jnp.take_along_axis(rp, a_m[:, None], 1)[:, 0]
    return jnp.sum(env.mu * jnp.abs(gap) * env.hard)


def hard_mass(env: TwoWorld):
    """alpha = mu(X_hard)."""
    return jnp.sum(env.mu * env.hard)


def random_two_world(key, n_contexts: int, n_actions: int, alpha: float) -> TwoWorld:
    """A random finite environment with hard mass exactly ``alpha`` (for tests and notebooks).

    Half of the contexts (at least one) are hard and share mass alpha; on each hard context the
    minus world swaps the rewards of the plus world's best and second-best actions.
    """
    if n_contexts < 2 or n_actions < 2:
        raise ValueError("need n_contexts >= 2 and n_actions >= 2")
    V.alpha(alpha)
    k1, k2 = jax.random.split(key)
    n_hard = max(1, n_contexts // 2)
    hard = (jnp.arange(n_contexts) < n_hard).astype(jnp.float64)
    w = jax.random.uniform(k1, (n_contexts,), jnp.float64, 0.5, 1.5)
    mu = jnp.where(hard > 0, alpha * w / jnp.sum(w * hard), (1 - alpha) * w / jnp.sum(w * (1 - hard)))
    rp = jax.random.uniform(k2, (n_contexts, n_actions), jnp.float64)
    order = jnp.argsort(-rp, axis=1)
    best, second = order[:, 0], order[:, 1]
    rows = jnp.arange(n_contexts)
    swapped = rp.at[rows, best].set(rp[rows, second]).at[rows, second].set(rp[rows, best])
    rm = jnp.where(hard[:, None] > 0, swapped, rp)
    return two_world(mu / mu.sum(), hard, rp, rm)


# --------------------------------------------------------------------------- Gaussian mixture
class Mixture(NamedTuple):
    """Gaussian-mixture environment of Section 3.1 (see the module docstring for the choices)."""

    theta: jax.Array  # (d_max,) unit vector, zero beyond d
    upsilon: jax.Array  # (d_max,) unit vector, orthogonal to theta
    xi: jax.Array  # (d_max,) nuisance unit vector, orthogonal to both
    mu_h: jax.Array  # (d_max,) mean of the hard component
    mask: jax.Array  # (d_max,) 1.0 on the d active coordinates
    alpha: jax.Array  # hard mass
    reward_scale: jax.Array  # s in (0, 1]


def mixture(key, d, alpha, *, d_max: int | None = None, hard_mean=(1.0, 0.0, 3.0), reward_scale=1.0) -> Mixture:
    """Sample the geometry (theta, upsilon, xi) of a Gaussian-mixture environment.

    Args:
      key: PRNG key.
      d: dimension (>= 3); may be a traced integer when ``d_max`` is given.
      alpha: P(z = 1), in (0, 1); may be traced.
      d_max: static array width (defaults to ``d``).
      hard_mean: coefficients of mu_h on (theta, upsilon, xi).
      reward_scale: s, rewards are 1/2 +- s/2.
    Validate concrete inputs with :func:`validate_mixture_args` before vmapping.
    """
    d_max = int(d) if d_max is None else d_max
    mask = (jnp.arange(d_max) < d).astype(F32)
    g = jax.random.normal(key, (3, d_max), F32) * mask
    theta = g[0] / jnp.linalg.norm(g[0])
    ups = g[1] - (g[1] @ theta) * theta
    ups = ups / jnp.linalg.norm(ups)
    xi = g[2] - (g[2] @ theta) * theta - (g[2] @ ups) * ups
    xi = xi / jnp.linalg.norm(xi)
    c = jnp.asarray(hard_mean, F32)
    mu_h = c[0] * theta + c[1] * ups + c[2] * xi
    return Mixture(theta, ups, xi, mu_h, mask, jnp.asarray(alpha, F32), jnp.asarray(reward_scale, F32))


def validate_mixture_args(d, alpha, reward_scale=1.0, d_max=None):
    """Concrete checks for :func:`mixture` (run before tracing)."""
    if int(d) != d or d < 3:
        raise ValueError(f"d must be an integer >= 3 (theta, upsilon, xi need three directions); got {d!r}")
    if d_max is not None and d > d_max:
        raise ValueError(f"d must be <= d_max={d_max}; got {d!r}")
    V.alpha(alpha)
    V.interval("reward_scale", reward_scale, 0.0, 1.0, hi_closed=True)


def sample_mixture(key, env: Mixture, n: int, alpha=None):
    """Draw n contexts x ~ (1 - a) N(0, I_d) + a N(mu_h, I_d) with their latent labels z.

    ``alpha`` overrides the hard mass (the shifted law mu_rho of Proposition 4 uses (1 + rho) alpha).
    Returns (x (n, d_max) float32, z (n,) float32 in {0, 1}).
    """
    a = env.alpha if alpha is None else alpha
    kz, kx = jax.random.split(key)
    z = (jax.random.uniform(kz, (n,), F32) < a).astype(F32)
    return sample_given_z(kx, env, z), z


def sample_given_z(key, env: Mixture, z):
    """x | z ~ N(z mu_h, I_d) for a given vector of labels z (stratified sampling)."""
    x = jax.random.normal(key, z.shape + env.mu_h.shape, F32) * env.mask
    return x + z[..., None] * env.mu_h


def _sign(u):
    return jnp.where(u >= 0, 1.0, -1.0).astype(F32)


def reward_gap(env: Mixture, x, z, w=1.0):
    """Delta_w(x) = r_w(x, a_1) - r_w(x, a_0) in units of s: sign(theta^T x) on easy contexts,
    w sign(upsilon^T x) on hard contexts (Section 3.1), with sign(0) := +1."""
    return jnp.where(z > 0, w * _sign(x @ env.upsilon), _sign(x @ env.theta))


def rewards(env: Mixture, x, z, w=1.0):
    """(r_w(x, a_0), r_w(x, a_1)) stacked on the last axis, in [0, 1]."""
    half = 0.5 * env.reward_scale * reward_gap(env, x, z, w)
    return jnp.stack([0.5 - half, 0.5 + half], axis=-1)


def mixture_separation(env: Mixture):
    """gamma = alpha s: on hard contexts |r_+(x, pi^+) - r_+(x, pi^-)| = s always (note 9.8)."""
    return env.alpha * env.reward_scale


def hard_posterior(env: Mixture, x, alpha=None):
    """P(z = 1 | x) = sigmoid(mu_h^T x - |mu_h|^2 / 2 + logit(alpha)) (equal covariances: linear)."""
    a = env.alpha if alpha is None else alpha
    return jax.nn.sigmoid(hard_logit(env, x, a))


def hard_logit(env: Mixture, x, alpha=None):
    """log P(z = 1 | x) / P(z = 0 | x), the log-likelihood ratio plus the prior log-odds."""
    a = env.alpha if alpha is None else alpha
    return x @ env.mu_h - 0.5 * env.mu_h @ env.mu_h + jnp.log(a) - jnp.log1p(-a)


def tilt_linear(env: Mixture, b, lam, alpha=None):
    """Exponential tilt q_lam ∝ mu exp(lam s) of the mixture by a linear score s(x) = b^T x + c.

    Each component N(m, I) tilts to N(m + lam b, I) with weight ∝ its mass times
    exp(lam b^T m + lam^2 |b|^2 / 2); the quadratic terms are equal for both components and cancel,
    so the tilted law is again a mixture with hard mass
        rho(lam) = q_lam(X_hard) = sigmoid(logit(alpha) + lam b^T mu_h)     (Section 3.4, exact),
    and every expectation under q_lam is the stratified expectation with samples shifted by lam b.
    Returns (rho, shift) with shift = lam b (lam may be an array: shift gets a trailing d axis).
    """
    a = env.alpha if alpha is None else alpha
    lam = jnp.asarray(lam, F32)
    rho = jax.nn.sigmoid(jnp.log(a) - jnp.log1p(-a) + lam * (b @ env.mu_h))
    return rho, lam[..., None] * b


def shifted_alpha(alpha, rho):
    """Proposition 4 / B.9: the shifted law mu_rho has hard mass alpha_rho = (1 + rho) alpha."""
    a = V.alpha(alpha)
    r = V.nonnegative("rho", rho)
    out = (1.0 + r) * a
    c = V.concrete(out)
    if c is not None and (np.asarray(c) >= 1).any():
        raise ValueError(f"(1 + rho) alpha must stay below 1; got {np.max(c)!r}")
    return out


# --------------------------------------------------------------------------- eq. (1)
class ThreeObjective(NamedTuple):
    """Three objectives g_j (3, K, 3) over K contexts and 3 actions; S (K,) marks the biased subset."""

    mu: jax.Array
    S: jax.Array
    g: jax.Array


def random_three_objective(key, n_contexts: int, alpha_S: float, margin: float = 0.2) -> ThreeObjective:
    """A finite environment for eq. (1): on S (mass alpha_S) objective j's best action is j.

    On S each objective's best action beats the other two by at least ``margin`` (plus a random
    extra); off S the objectives are random. Rewards lie in [0, 1].
    """
    V.alpha(alpha_S, "alpha_S")
    V.interval("margin", margin, 0.0, 0.5, hi_closed=True)
    k1, k2, k3 = jax.random.split(key, 3)
    n_s = max(1, n_contexts // 3)
    S = (jnp.arange(n_contexts) < n_s).astype(jnp.float64)
    w = jax.random.uniform(k1, (n_contexts,), jnp.float64, 0.5, 1.5)
    mu = jnp.where(S > 0, alpha_S * w / jnp.sum(w * S), (1 - alpha_S) * w / jnp.sum(w * (1 - S)))
    base = jax.random.uniform(k2, (3, n_contexts, 3), jnp.float64, 0.0, 1.0 - margin)
    j = jnp.arange(3)
    maxb = jnp.max(base, axis=-1)  # <= 1 - margin
    top = maxb + margin + 0.5 * jax.random.uniform(k3, (3, n_contexts), jnp.float64) * (1.0 - margin - maxb)
    on_s = base.at[j, :, j].set(top[j])
    g = jnp.where(S[None, :, None] > 0, on_s, base)
    return ThreeObjective(mu / mu.sum(), S, jnp.clip(g, 0.0, 1.0))


def objective_regrets(env: ThreeObjective, policy):
    """regret_j(pi) = E[g_j(X, pi^(j)(X))] - E[g_j(X, pi(X))] for j = 1, 2, 3 (eq. (1))."""
    best = jnp.max(env.g, axis=-1)
    return jnp.sum(env.mu * best, -1) - jax.vmap(lambda gj: value(env.mu, gj, policy))(env.g)


def objective_margins(env: ThreeObjective):
    """m_j = min over x in S of g_j(x, pi^(j)(x)) - max_{a != pi^(j)(x)} g_j(x, a) (eq. (1))."""
    srt = jnp.sort(env.g, axis=-1)
    m = srt[..., -1] - srt[..., -2]
    return jnp.min(jnp.where(env.S[None] > 0, m, jnp.inf), axis=-1)


def multi_objective_bound(env: ThreeObjective, stronger: bool = False):
    """eq. (1): sum_j regret_j >= alpha_S min_j m_j; the argument gives 2 alpha_S min_j m_j (note 9.12)."""
    a_s = jnp.sum(env.mu * env.S)
    return (2.0 if stronger else 1.0) * a_s * jnp.min(objective_margins(env))
