"""The catalogue of laws (paper Section 4, Appendix B) as functions over finite models.

A finite model: contexts x = 1..K with base law mu (``log_mu``), a hard-set indicator H,
a proxy score s = s_hat, rewards r_w(x, a) and proxy rewards r_hat(x, a) over actions.
Two tilts act on it (paper note 9.13, kept apart here):
  * the context tilt q_lam ∝ mu exp(lam s) (Props 2, 3, 6, B.4, B.10),
  * the logistic policy pi_lam(a_1 | x) = sigmoid(lam s(x)) over two actions (Section 3.2, C.7).
Each closed-form derivative is checked against ``jax.grad`` in ``theory/checks``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from murphyjax.theory import validate as V
from murphyjax.theory.tilting import hard_mass_drift, tilt


# --------------------------------------------------------------------------- Props 2, 3, 6
def optimization_drift(log_mu, score, hard, lam):
    """Proposition 2 (Section 4.1): d/dlam log rho(lam) = Cov_{q_lam}(H, s) / rho(lam).

    Positive covariance on an interval means rho strictly increases there. Returns the dict
    of :func:`theory.tilting.hard_mass_drift` (rho, drift = rho', log_drift).
    """
    return hard_mass_drift(log_mu, score, hard, lam)


def tilted_value(log_mu, score, value, lam):
    """Proposition 3 (Section 4.2): V^dist(lam) = E_{q_lam}[v(X)] and its derivative Cov_q(v, s).

    ``value`` is v(x) = r(x, pi(x)) for a fixed policy (for a stochastic policy, the expected
    reward sum_a pi(a|x) r(x, a)). Returns dict ``value``, ``derivative``.
    """
    t = tilt(log_mu, score, lam)
    v = V.finite("value", value)
    return {"value": t.mean(v), "derivative": t.cov(v, t.score)}


def proxy_true_divergence(log_mu, score, proxy_value, true_value, lam):
    """Proposition 6 / B.10: Delta_PV(lam) = V_hat^dist - V_w^dist, slope Cov_q(r_hat - r_w, s).

    Returns dict ``gap`` (Delta_PV), ``slope`` and the two values.
    """
    t = tilt(log_mu, score, lam)
    p = V.finite("proxy_value", proxy_value)
    u = V.finite("true_value", true_value)
    return {"gap": t.mean(p - u), "slope": t.cov(p - u, t.score), "proxy": t.mean(p), "true": t.mean(u)}


# --------------------------------------------------------------------------- Prop 4, B.9
def shifted_value(alpha, rho, easy_value, hard_value):
    """Proposition 4 / B.9: V_{w,rho}(pi) = (1 - alpha_rho) E_easy + alpha_rho E_hard, alpha_rho = (1+rho) alpha.

    Args:
      alpha: hard mass under mu, in (0, 1).
      rho: shift, >= 0 with (1 + rho) alpha < 1.
      easy_value, hard_value: E[r_w(X, pi(X)) | X easy] and | X hard (conditionals fixed).
    Returns dict ``value`` and ``derivative`` d/drho = alpha (E_hard - E_easy) (B.9).
    """
    a = V.alpha(alpha)
    r = V.nonnegative("rho", rho)
    ca, cr = V.concrete(alpha), V.concrete(rho)
    if ca is not None and cr is not None:
        import numpy as np

        if np.any((1 + cr) * ca >= 1):
            raise ValueError(f"rho must satisfy (1 + rho) alpha < 1, i.e. rho < {1 / np.min(ca) - 1:.6g}; got {V._fmt(cr)}")
    e = V.finite("easy_value", easy_value)
    h = V.finite("hard_value", hard_value)
    ar = (1.0 + r) * a
    return {"value": (1.0 - ar) * e + ar * h, "derivative": a * (h - e) + 0.0 * r, "alpha_rho": ar}


# --------------------------------------------------------------------------- logistic policy
def logistic_policy(score, lam):
    """pi_lam(a_1 | x) = sigmoid(lam s_hat(x)) (Section 3.2)."""
    s = V.finite("score", score)
    lam = V.finite("lam", lam)
    return jax.nn.sigmoid(lam[..., None] * s)


def policy_value(log_mu, score, r0, r1, lam):
    """E_mu[r(X, pi_lam(X))] = E_mu[sigma(lam s) r1 + (1 - sigma(lam s)) r0] for the logistic policy."""
    mu = jnp.exp(V.log_prob_vector("log_mu", log_mu))
    p = logistic_policy(score, lam)
    return jnp.sum(mu * (p * jnp.asarray(r1, V.F64) + (1 - p) * jnp.asarray(r0, V.F64)), axis=-1)


def policy_value_derivative(log_mu, score, r0, r1, lam):
    """C.7 corrected: d/dlam E_mu[r(X, pi_lam(X))] = E_mu[s sigma'(lam s) (r1 - r0)].

    sigma'(u) = sigma(u)(1 - sigma(u)). The paper's C.7 claims Cov_mu(r(X, pi_lam(X)), s(X))
    instead (``policy_value_derivative_paper``), which is not the derivative (paper note 9,
    "C.7 fails as written").
    """
    mu = jnp.exp(V.log_prob_vector("log_mu", log_mu))
    s = V.finite("score", score)
    p = logistic_policy(s, lam)
    return jnp.sum(mu * s * p * (1 - p) * (jnp.asarray(r1, V.F64) - jnp.asarray(r0, V.F64)), axis=-1)


def policy_value_derivative_paper(log_mu, score, r0, r1, lam):
    """C.7 as written (erratum): Cov_mu(r(X, pi_lam(X)), s(X)), with r(x, pi_lam(x)) the expected reward."""
    mu = jnp.exp(V.log_prob_vector("log_mu", log_mu))
    s = V.finite("score", score)
    p = logistic_policy(s, lam)
    g = p * jnp.asarray(r1, V.F64) + (1 - p) * jnp.asarray(r0, V.F64)
    gm = jnp.sum(mu * g, axis=-1, keepdims=True)
    return jnp.sum(mu * (g - gm) * (s - jnp.sum(mu * s)), axis=-1)


# --------------------------------------------------------------------------- B.4
def overoptimization(log_mu, score, hard, r0, r1, lam):
    """B.4: the value of pi_lam under the tilted context law, V(lam) = E_{q_lam}[r(X, pi_lam(X))].

    With rho = q_lam(X_hard), E_h = E_{q_lam}[g_lam | hard], E_e = E_{q_lam}[g_lam | easy] and
    g_lam(x) = sigma(lam s) r1 + (1 - sigma(lam s)) r0:

      dV/dlam = rho' (E_h - E_e) + (1 - rho) dE_e/dlam + rho dE_h/dlam         (full)
      dV/dlam = rho' (E_h - E_e)                                             (B.4 as written)

    B.4 differentiates only rho and drops the lam-dependence of the conditional expectations
    (paper note 9.10). The full derivative is also Cov_q(g, s) + E_q[dg/dlam]. H must be 0/1.

    Returns dict: ``value``, ``rho``, ``easy``, ``hard`` (conditional means), ``derivative``
    (full), ``derivative_paper`` (B.4's), ``omitted`` (their difference).
    """
    h = V.probability("hard", hard)
    t = tilt(log_mu, score, lam)
    s = t.score
    p = jax.nn.sigmoid(t._lam()[..., None] * s)
    r0 = jnp.asarray(r0, V.F64)
    r1 = jnp.asarray(r1, V.F64)
    g = p * r1 + (1 - p) * r0
    dg = s * p * (1 - p) * (r1 - r0)
    q = t.probs
    rho = jnp.sum(q * h, -1)
    value = jnp.sum(q * g, -1)
    eh = jnp.sum(q * h * g, -1) / rho
    ee = jnp.sum(q * (1 - h) * g, -1) / (1 - rho)
    gm = value[..., None]
    full = jnp.sum(q * (g - gm) * (s - jnp.sum(q * s, -1)[..., None]), -1) + jnp.sum(q * dg, -1)
    drho = t.cov(h, s)
    paper = drho * (eh - ee)
    return {"value": value, "rho": rho, "easy": ee, "hard": eh, "derivative": full,
            "derivative_paper": paper, "omitted": full - paper}


def first_downturn(lams, derivative):
    """Smallest lam on a grid after which the derivative is negative (linear interpolation).

    Used to report the over-optimisation threshold predicted (B.4's derivative) and observed
    (the full derivative). Returns nan when the derivative never turns negative.
    """
    import numpy as np

    lams = np.asarray(lams, float)
    d = np.asarray(derivative, float)
    neg = np.nonzero((d[:-1] >= 0) & (d[1:] < 0))[0]
    if d.size and d[0] < 0:
        return float(lams[0])
    if neg.size == 0:
        return float("nan")
    i = neg[0]
    return float(lams[i] + (lams[i + 1] - lams[i]) * d[i] / (d[i] - d[i + 1]))
