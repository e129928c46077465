"""Diagnostics D1-D3 and the bound comparisons (arXiv:2509.05381 v3, Sections 3.3, 3.4, 2.4-2.8).

Expectations over mu are stratified: E_mu[f] = (1 - alpha) E[f | easy] + alpha E[f | hard], with
the two conditional means estimated on fixed evaluation samples of each stratum (common random
numbers across lambda, n and rho; the hard stratum is not starved when alpha is small). The shifted
law mu_rho of D2 reuses the same samples with alpha_rho = (1 + rho) alpha (Proposition 4).

Conventions (Section 3.1-3.2 of the paper, choices in ``envs``): true rewards 1/2 +- s Delta/2 with
Delta in {-1, +1}; the proxy r_hat(x, a_1) - r_hat(x, a_0) = s_hat(x) with r_hat = 1/2 +- s_hat/2
(logit units: V_hat is not on the scale of V). pi^+ takes a_1 iff Delta_+(x) > 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

F32 = jnp.float32


def stratified_mean(f_easy, f_hard, alpha):
    """(1 - alpha) mean(f_easy) + alpha mean(f_hard) over the last axis."""
    return (1.0 - alpha) * jnp.mean(f_easy, -1) + alpha * jnp.mean(f_hard, -1)


def _tilt_pick(s_hat, lam):
    """E_pi[2 1{a_1} - 1] = 2 pi_lambda(a_1 | x) - 1 = tanh(lambda s_hat / 2); lam = inf is greedy."""
    lam = jnp.asarray(lam, F32)[..., None]
    greedy = jnp.where(s_hat >= 0, 1.0, -1.0)
    return jnp.where(jnp.isinf(lam), greedy, jnp.tanh(0.5 * jnp.where(jnp.isinf(lam), 0.0, lam) * s_hat))


@jax.jit
def d1_curves(s_easy, s_hard, delta_easy, delta_hard, lam, alpha, scale=1.0):
    """D1 on a lambda grid: true and proxy value of pi_lambda, G(lambda), G_hat(lambda) and parts.

    Args:
      s_easy, s_hard: (M,) proxy s_hat on the easy / hard evaluation samples.
      delta_easy, delta_hard: (M,) true Delta_+(x) in {-1, +1} there.
      lam: (L,) temperatures (``inf`` = greedy sign(s_hat)); alpha: hard mass (may be alpha_rho);
      scale: the reward scale s.
    Returns dict of (L,) arrays:
      V = V_+(pi_lambda) = 1/2 + (s/2) E[(2 pi - 1) Delta];  V_star = V_+(pi^+) = 1/2 + s/2;
      G = V_star - V and its parts G_easy + G_hard = G (each already weighted by its mass);
      V_hat = 1/2 + E[(2 pi - 1) s_hat] / 2;  G_hat = V_hat(pi^+) - V_hat(pi_lambda).
    """
    pe, ph = _tilt_pick(s_easy, lam), _tilt_pick(s_hard, lam)
    reg_e = 0.5 * scale * (1.0 - pe * delta_easy)
    reg_h = 0.5 * scale * (1.0 - ph * delta_hard)
    G_easy = (1.0 - alpha) * jnp.mean(reg_e, -1)
    G_hard = alpha * jnp.mean(reg_h, -1)
    V_star = 0.5 + 0.5 * scale
    V = V_star - G_easy - G_hard
    V_hat = 0.5 + 0.5 * stratified_mean(pe * s_easy, ph * s_hard, alpha)
    V_hat_star = 0.5 + 0.5 * stratified_mean(delta_easy * s_easy, delta_hard * s_hard, alpha)
    return {"V": V, "V_star": V_star * jnp.ones_like(V), "G": G_easy + G_hard, "G_easy": G_easy,
            "G_hard": G_hard, "V_hat": V_hat, "G_hat": V_hat_star - V_hat}


@jax.jit
def tilted_hard_mass(s_easy, s_hard, lam, alpha):
    """rho(lambda) = q_lambda(X_hard), q_lambda ∝ mu exp(lambda s_hat) (Section 3.4, Proposition 1).

    This tilts the *context* law, not the action policy (note 9.13). Self-normalised importance
    weights on the stratified samples, in log space (logsumexp). Also returns the effective sample
    size (sum w)^2 / sum w^2 of the weights: small ESS means the Monte Carlo rho is unreliable.
    Returns (rho (L,), ess (L,)); lam must be finite.
    """
    lam = jnp.asarray(lam, F32)[..., None]
    M_e, M_h = s_easy.shape[-1], s_hard.shape[-1]
    le = lam * s_easy + jnp.log1p(-alpha) - jnp.log(M_e)
    lh = lam * s_hard + jnp.log(alpha) - jnp.log(M_h)
    lse_e = jax.nn.logsumexp(le, -1)
    lse_h = jax.nn.logsumexp(lh, -1)
    rho = jax.nn.sigmoid(lse_h - lse_e)
    allw = jnp.concatenate([le, lh], -1)
    ess = jnp.exp(2 * jax.nn.logsumexp(allw, -1) - jax.nn.logsumexp(2 * allw, -1))
    return rho, ess


def first_reach(values, grid, target):
    """Smallest budget in ``grid`` at which ``values`` (..., len(grid)) is <= target; inf if never.

    ``target`` broadcasts against values[..., 0]. NumPy (post-processing).
    """
    values = np.asarray(values)
    grid = np.asarray(grid, np.float64)
    target = np.asarray(target)[..., None]
    ok = values <= target
    idx = np.argmax(ok, axis=-1)
    return np.where(ok.any(-1), grid[idx], np.inf)


def quantile_summary(x, axis=0, lo=0.05, hi=0.95):
    """(median, lo-quantile, hi-quantile) along ``axis`` (the paper's medians with 90 % intervals).

    inf entries (budget never reached) are kept: a median of inf means "not reached in most seeds".
    With inf present the quantiles are taken without interpolation (``inverted_cdf``).
    """
    x = np.asarray(x, np.float64)
    method = "inverted_cdf" if np.isinf(x).any() else "linear"
    return tuple(np.quantile(x, q, axis=axis, method=method) for q in (0.5, lo, hi))


def minimax(err_by_world):
    """Empirical minimax risk: max over worlds (axis 0) of the mean error (axis 1 = replicates)."""
    return np.max(np.mean(np.asarray(err_by_world), axis=1), axis=0)


def wilson_interval(p_hat, n, z=2.576):
    """Wilson score interval of a binomial proportion (99 % by default) for Monte Carlo tolerances."""
    p_hat = np.asarray(p_hat, np.float64)
    den = 1 + z**2 / n
    centre = (p_hat + z**2 / (2 * n)) / den
    half = z * np.sqrt(p_hat * (1 - p_hat) / n + z**2 / (4 * n**2)) / den
    return centre - half, centre + half
