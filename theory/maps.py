"""MAPS as proxy shaping (paper Appendix D, "Mitigation via alignment proxy shaping").

A shaped score t = w_0 s_0 + sum_i w_i s_i - sum_j beta_j g_j is tilted instead of s_0
(D.1); its first-order hard-mass drift is rho_t'(0) = Cov_mu(H, t) (D.2). The levers:
  * a flagger penalty beta h_hat with Cov_mu(H, h_hat) = alpha (1 - alpha)(tau - phi) (D.3),
    beta* cancels the drift at lam = 0 only;
  * projecting the reward surrogate orthogonally to H (D.4);
  * temperature: KL ≈ lam^2 Var_mu(t)/2 (D.5), which shrinks the drift but cannot flip its sign;
  * D.6: Cov_mu(H, t) = 0 does not keep the drift zero for lam != 0.
Covariances are under mu: <f, g> = Cov_mu(f, g) (D.4).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from murphyjax.theory import validate as V
from murphyjax.theory.tilting import tilt


def _cov(mu, f, g):
    f = jnp.asarray(f, V.F64)
    g = jnp.asarray(g, V.F64)
    fc = f - jnp.sum(mu * f, -1, keepdims=True)
    gc = g - jnp.sum(mu * g, -1, keepdims=True)
    return jnp.sum(mu * fc * gc, -1)


def shaped_score(s0, w0=1.0, aux=(), weights=(), penalties=(), betas=()):
    """D.1: t(x) = w_0 s_0(x) + sum_i w_i s_i(x) - sum_j beta_j g_j(x)."""
    t = V.finite("w0", w0) * V.finite("s0", s0)
    if len(aux) != len(weights):
        raise ValueError(f"aux and weights must have the same length; got {len(aux)} and {len(weights)}")
    if len(penalties) != len(betas):
        raise ValueError(f"penalties and betas must have the same length; got {len(penalties)} and {len(betas)}")
    for s, w in zip(aux, weights):
        t = t + V.finite("weights", w) * V.finite("aux", s)
    for g, b in zip(penalties, betas):
        t = t - V.finite("betas", b) * V.finite("penalties", g)
    return t


def drift_at_zero(mu, hard, t):
    """D.2: rho_t'(0) = Cov_mu(H, t)."""
    mu = V.prob_vector("mu", mu)
    return _cov(mu, V.probability("hard", hard), V.finite("t", t))


def residual_drift(log_mu, hard, t, lam):
    """D.2 / D.6: rho_t'(lam) = Cov_{q^t_lam}(H, t) at any lam (not only 0)."""
    tl = tilt(log_mu, t, lam)
    return tl.cov(V.probability("hard", hard), tl.score)


def flagger_covariance(alpha, tau, phi):
    """D.3: Cov_mu(H, h_hat) = alpha (1 - alpha)(tau - phi) for a flagger with TPR tau, FPR phi."""
    a = V.alpha(alpha)
    return a * (1.0 - a) * (V.probability("tau", tau) - V.probability("phi", phi))


def flagger_beta_star(cov_h_g, alpha, tau, phi):
    """D.3: beta* = Cov_mu(H, g) / (alpha (1 - alpha)(tau - phi)) cancels rho_t'(0) for t = g - beta h_hat.

    Raises when tau == phi: an uninformative flagger cannot cancel anything ("no beta helps").
    """
    c = V.concrete(tau)
    d = V.concrete(phi)
    if c is not None and d is not None and np.any(np.asarray(c) == np.asarray(d)):
        raise ValueError("tau must differ from phi: a flagger with tau == phi is independent of H and no beta helps (D.3)")
    return V.finite("cov_h_g", cov_h_g) / flagger_covariance(alpha, tau, phi)


def project_out_hard(r_delta, hard, mu):
    """D.4: r_Delta - (<H, r_Delta> / <H, H>) H with <f, g> = Cov_mu(f, g): Cov_mu(H, result) = 0."""
    mu = V.prob_vector("mu", mu)
    h = V.probability("hard", hard)
    r = V.finite("r_delta", r_delta)
    return r - _cov(mu, h, r) / _cov(mu, h, h) * h


def maps_weights(scores, r_delta, hard, mu, tau0, radius):
    """D.4: min_w <H, sum_i w_i s_i> s.t. <r_Delta, sum_i w_i s_i> >= tau0, ||w||_2 <= R.

    With c_i = <H, s_i>, a_i = <r_Delta, s_i> this is min c.w over a ball cut by a halfspace.
    Closed form: w = -R c/|c| if that satisfies the constraint; otherwise the constraint is
    active, w = (tau0/|a|) a_hat - sqrt(R^2 - tau0^2/|a|^2) c_perp/|c_perp| (c_perp: the part
    of c orthogonal to a). Infeasible (ValueError) when tau0 > R |a|.

    Args:
      scores: (m+1, K) proxies s_0..s_m; r_delta: (K,) reward surrogate; hard: (K,) H;
      mu: (K,) context law; tau0: required reward correlation; radius: R > 0.
    Returns dict ``weights`` (m+1,), ``objective`` <H, sum w s>, ``correlation`` <r, sum w s>.
    """
    mu = V.prob_vector("mu", mu)
    S = V.finite("scores", scores)
    h = V.probability("hard", hard)
    r = V.finite("r_delta", r_delta)
    R = float(V.positive("radius", radius))
    t0 = float(V.finite("tau0", tau0))
    c = np.asarray(_cov(mu, h, S))
    a = np.asarray(_cov(mu, r, S))
    na = np.linalg.norm(a)
    if t0 > R * na:
        raise ValueError(f"tau0 must be <= radius * |<r_delta, s_i>| = {R * na:.6g} (else no feasible w); got {t0!r}")
    nc = np.linalg.norm(c)
    w = -R * c / nc if nc > 0 else np.zeros_like(c)
    if a @ w < t0:
        ah = a / na
        cp = c - (c @ ah) * ah
        ncp = np.linalg.norm(cp)
        rest = np.sqrt(max(R**2 - (t0 / na) ** 2, 0.0))
        w = (t0 / na) * ah - (rest * cp / ncp if ncp > 0 else 0.0)
    w = jnp.asarray(w)
    return {"weights": w, "objective": jnp.asarray(c) @ w, "correlation": jnp.asarray(a) @ w}


def temperature_kl(log_mu, t, lam):
    """D.5: exact KL(q^t_lam || mu) and its small-lam approximation lam^2 Var_mu(t)/2.

    Returns dict ``kl`` (exact), ``approx`` and ``rel_error``.
    """
    tl = tilt(log_mu, t, lam)
    base = tilt(log_mu, t, 0.0)
    approx = 0.5 * tl._lam() ** 2 * base.var(base.score)
    kl = tl.kl()
    return {"kl": kl, "approx": approx, "rel_error": jnp.abs(kl - approx) / jnp.maximum(kl, 1e-300)}
