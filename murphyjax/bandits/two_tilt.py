"""Exact laws of the two-tilt system on a finite two-action bandit (closed forms not in ``theory/``).

Contexts follow q_lam ∝ mu exp(lam t) (Section 3.4; or mu itself on the policy-only path) and
actions pi_lam(a_1 | x) = sigmoid(lam t(x)) = pi_0 exp(lam r_t) / Z with pi_0 uniform and the
centred proxy rewards r_t(x, a_1/a_0) = (1 +- t(x)) / 2. With e_a(x) = r(x, a) - U(x, a) for the reported
proxy r (r_t itself, or the unshaped r_hat = (1 +- s_hat)/2 when t is a MAPS-shaped score),
g(x) = pi e_1 + (1 - pi) e_0 and sigma' = pi (1 - pi):

  gap(lam)    = E_q[g],                 d gap / d lam    = Cov_q(g, t) + E_q[t sigma' (e_1 - e_0)],
  hacked(lam) = E_q[H pi],              d hacked / d lam = Cov_q(H pi, t) + E_q[H t sigma'],

(the tilt identity B.3 for the context part, the logistic derivative for the action part; on the
policy-only path the covariance terms vanish and d hacked / d lam = E_mu[H Cov_pi(1{a_1}, r_t)],
the per-context form of Propositions 1-2). ``theory.overoptimization`` gives the true value of
the same system with B.4's derivative; ``theory.alignment_gap`` the policy-only gap.
These are candidates for ``theory/laws.py`` (listed in the issue-4 report).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from murphyjax.theory import validate as V
from murphyjax.theory.tilting import tilt


def two_tilt_system(log_mu, t, hard, u0, u1, lam, context: bool = True, s_eval=None):
    """Gap, hacked mass and true value of the two-tilt system, with their exact lam-derivatives.

    Args:
      log_mu: (K,) normalised log context law. t: (K,) optimised score (utility units).
      hard: (K,) H in {0, 1}. u0, u1: (K,) true utilities. lam: scalar or (L,) grid (>= 0).
      context: tilt the contexts too (the B.4 system) or keep them at mu (policy tilt only).
      s_eval: (K,) score of the proxy whose gap is reported, r(x, a_1/a_0) = (1 +- s_eval)/2; default t.
        MAPS (App. D) optimises a shaped t but the reward model still reports s_hat: the gap of s_hat
        under the shaped system is s_eval = s_hat (the derivative formulas hold for any fixed s_eval).
    Returns dict of (L,) arrays: ``gap``, ``dgap``, ``hacked``, ``dhacked``, ``value`` (E[U]),
    ``dvalue``, ``rho`` (context hard mass), ``kl`` = KL(q pi || mu pi_0) of the joint law.
    """
    lmu = V.log_prob_vector("log_mu", log_mu)
    t = V.finite("t", t)
    h = V.probability("hard", hard)
    u0 = V.probability("u0", u0)
    u1 = V.probability("u1", u1)
    lam = jnp.atleast_1d(V.nonnegative("lam", lam))
    tl = tilt(lmu, t, lam if context else jnp.zeros_like(lam))
    q = tl.probs  # (L, K)
    pi = jax.nn.sigmoid(lam[:, None] * t[None, :])
    sp = pi * (1.0 - pi)
    se = t if s_eval is None else V.finite("s_eval", s_eval)
    e1, e0 = 0.5 * (1.0 + se) - u1, 0.5 * (1.0 - se) - u0

    def moments(f, df):
        m = jnp.sum(q * f, -1)
        cov = jnp.sum(q * (f - m[:, None]) * (t - jnp.sum(q * t, -1)[:, None]), -1) if context else 0.0
        return m, cov + jnp.sum(q * df, -1)

    gap, dgap = moments(pi * e1 + (1 - pi) * e0, t * sp * (e1 - e0))
    hacked, dhacked = moments(h * pi, h * t * sp)
    value, dvalue = moments(pi * u1 + (1 - pi) * u0, t * sp * (u1 - u0))
    kl_pi = pi * jnp.log(2 * pi + 1e-300) + (1 - pi) * jnp.log(2 * (1 - pi) + 1e-300)
    kl = (tl.kl() if context else 0.0) + jnp.sum(q * kl_pi, -1)
    return {"gap": gap, "dgap": dgap, "hacked": hacked, "dhacked": dhacked, "value": value, "dvalue": dvalue,
            "rho": jnp.sum(q * h, -1), "kl": kl}
