"""Checks of MAPS proxy shaping (Appendix D)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from murphyjax.theory import maps as MP
from murphyjax.theory import tilting as TL
from murphyjax.theory.checks._core import Row, check, f
from murphyjax.theory.checks.tilting_checks import random_model


@check(('D2', 'D3', 'D4', 'D5', 'D6'))
def maps(key):
    lm, s, h, fx = random_model(key, K=16)
    mu = jnp.exp(lm)
    alpha = f(jnp.sum(mu * h))
    # D.2: rho_t'(0) = Cov_mu(H, t) vs autodiff of the hard mass under the t-tilt
    t = MP.shaped_score(s, 1.0, aux=[fx], weights=[0.5], penalties=[h * fx], betas=[0.3])
    d0 = f(jax.grad(lambda l: TL.hard_mass(lm, t, h, l))(0.0))
    # D.3: a flagger as a deterministic feature of an extended space (x, coin): enumerate the joint law
    tau, phi = 0.7, 0.2
    cells = [(1, 1, alpha * tau), (1, 0, alpha * (1 - tau)), (0, 1, (1 - alpha) * phi), (0, 0, (1 - alpha) * (1 - phi))]
    eH = sum(p * H for H, _, p in cells)
    eF = sum(p * F for _, F, p in cells)
    cov_enum = sum(p * (H - eH) * (F - eF) for H, F, p in cells)
    # beta*: on the extended space (x, coin) with the flagger as a feature, cancel the drift of g = s
    xs = np.repeat(np.arange(s.shape[0]), 2)
    coin = np.tile([1, 0], s.shape[0])
    hx = np.asarray(h)[xs]
    flag = coin  # the flagger fires with the coin; P(coin = 1 | x) = tau on hard, phi on easy
    p_coin = np.where(hx > 0, tau, phi)
    w_ext = np.asarray(mu)[xs] * np.where(coin == 1, p_coin, 1 - p_coin)
    g_ext = np.asarray(s)[xs]
    cov_hg = f(MP.drift_at_zero(w_ext, hx, g_ext))
    beta = f(MP.flagger_beta_star(cov_hg, alpha, tau, phi))
    t_star = g_ext - beta * flag
    lw = jnp.log(jnp.asarray(w_ext))
    drift0 = f(MP.drift_at_zero(w_ext, hx, t_star))
    drift1 = f(MP.residual_drift(lw, hx, t_star, 1.0))
    # D.4 projection
    proj = MP.project_out_hard(fx, h, mu)
    # D.4 constrained problem vs random search over the feasible set
    S = jnp.stack([s, fx, h * s, jnp.sin(3 * s)])
    sol = MP.maps_weights(S, fx, h, mu, tau0=0.02, radius=1.0)
    W = jax.random.normal(jax.random.fold_in(key, 9), (400000, 4))
    W = W / jnp.linalg.norm(W, axis=1, keepdims=True) * jnp.sqrt(jax.random.uniform(jax.random.fold_in(key, 10), (400000, 1)))
    cH = MP._cov(mu, h, S)
    cR = MP._cov(mu, fx, S)
    feas = W @ cR >= 0.02
    best_rand = f(jnp.min(jnp.where(feas, W @ cH, jnp.inf)))
    # D.5 temperature: relative error of lam^2 Var/2 is O(lam)
    ts = jnp.exp(s)  # a skewed score: the leading correction is lam^3 kappa_3 / 3
    l0 = 1e-3
    tk = MP.temperature_kl(lm, ts, l0)
    k3 = f(jax.grad(jax.grad(jax.grad(lambda l: TL.log_partition(lm, ts, l))))(0.0))
    # D.6: t orthogonal to H under mu -> zero drift at 0, nonzero at lam = 1
    t_orth = MP.project_out_hard(s, h, mu)
    return [
        Row("D2.drift0", "D.2", "rho_t'(0) = Cov_mu(H, t) for a shaped score", f(MP.drift_at_zero(mu, h, t)), d0, "jax.grad", 1e-13),
        Row("D3.flagger_cov", "D.3", f"Cov_mu(H, h_hat) = alpha(1-alpha)(tau - phi) (tau={tau}, phi={phi})", f(MP.flagger_covariance(alpha, tau, phi)), cov_enum, "enumeration of (H, h_hat)", 1e-15),
        Row("D3.beta_star", "D.3", "t = g - beta* h_hat has zero drift at lam = 0", 0.0, drift0, "enumeration", 1e-13),
        Row("D3.residual", "D.3 / D.6", "...but not at lam = 1: |rho_t'(1)| > 1e-4 (cancellation is first-order only)", 1e-4, abs(drift1), "enumeration", 0.0,
            kind="bound", direction=">="),
        Row("D4.projection", "D.4", "Cov_mu(H, r - beta H) = 0 after projection", 0.0, f(MP.drift_at_zero(mu, h, proj)), "enumeration", 1e-15),
        Row("D4.constrained", "D.4", "closed-form min <H, sum w s> s.t. <r, sum w s> >= tau0, |w| <= 1 is <= the best of 4e5 random feasible w",
            best_rand, f(sol["objective"]), "random search", 1e-12, kind="bound"),
        Row("D4.feasible", "D.4", "the closed-form solution meets the reward constraint", 0.02, f(sol["correlation"]), "closed form", 1e-12, kind="bound", direction=">="),
        Row("D5.temperature", "D.5", "KL(q_lam||mu) - lam^2 Var_mu(t)/2 = lam^3 A^(3)(0)/3 + O(lam^4) at lam = 1e-3 (relative)",
            l0**3 * k3 / 3, f(tk["kl"] - tk["approx"]), "jax.grad thrice", 1e-2, relative=True),
        Row("D6.zero_at_0", "D.6", "t projected orthogonal to H: rho_t'(0) = 0", 0.0, f(MP.residual_drift(lm, h, t_orth, 0.0)), "enumeration", 1e-14),
        Row("D6.nonzero", "D.6", "...yet rho_t'(1) != 0: |rho_t'(1)| > 1e-4", 1e-4, abs(f(MP.residual_drift(lm, h, t_orth, 1.0))), "enumeration", 0.0,
            kind="bound", direction=">="),
    ]
