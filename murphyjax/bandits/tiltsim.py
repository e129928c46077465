"""Simulating the two tilts on a finite two-action bandit: what optimisation pressure *does*, by sampling.

The theory (``murphyjax.theory``) computes every law of Sections 3.4, 4 and B exactly as finite
sums. This module measures the same quantities the way an experiment would: it draws contexts
from the tilted law and actions from the tilted policy and averages. Two paths (paper note 9.13):

* ``context=True``: contexts X ~ q_lam ∝ mu exp(lam t(X)) (Section 3.4), actions
  A ~ pi_lam(a_1 | X) = sigmoid(lam t(X)): the system of B.4, where both are driven by the
  optimised score t (the proxy s_hat, or a MAPS-shaped score, App. D);
* ``context=False``: X ~ mu, A ~ pi_lam: the policy tilt pi_lam ∝ pi_0 exp(lam r_t) alone
  (the v1 Alignment Gap with pi_0 uniform over two actions).

Common random numbers: one set of uniforms serves every lam of the grid (inverse-CDF sampling of
the context, threshold sampling of the action), so curves are smooth in lam and central finite
differences estimate derivatives with small variance. Arrays are float32 except the CDF
(float64: a float32 cumulative sum over many contexts loses the small tilted masses).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

F32, F64 = jnp.float32, jnp.float64


def tilted_contexts(u, log_mu, score, lam):
    """Indices of contexts drawn from q_lam ∝ mu exp(lam score) by inverse CDF from uniforms u (N,).

    Returns (L, N) int indices for the L values of ``lam``.
    """
    logits = log_mu[None, :] + jnp.asarray(lam, F64)[:, None] * score[None, :]
    p = jax.nn.softmax(logits, axis=-1)
    cdf = jnp.cumsum(p, axis=-1)
    cdf = cdf / cdf[:, -1:]
    idx = jax.vmap(lambda c: jnp.searchsorted(c, u, side="right"))(cdf)
    return jnp.minimum(idx, score.shape[0] - 1)


@functools.partial(jax.jit, static_argnames=("n_samples", "context"))
def simulate(key, log_mu, t, s_greedy, hard, u0, u1, lams, *, n_samples: int, context: bool):
    """Monte Carlo estimates along a lam grid for one bandit and one optimised score t.

    Args:
      key: PRNG key (its uniforms are shared by every lam: common random numbers).
      log_mu: (K,) log context law. t: (K,) optimised score (utility units): the context tilt's
        score and the advantage of a_1 in the policy pi_lam(a_1 | x) = sigmoid(lam t(x)).
      s_greedy: (K,) score of the fixed greedy policy pi(x) = a_1 iff s_greedy >= 0 (Prop. 6 / B.10).
      hard: (K,) H. u0, u1: (K,) true utilities of a_0, a_1. lams: (L,) grid.
      n_samples: draws per lam. context: tilt the contexts (True) or keep X ~ mu (False).
    Returns dict of (L,) means: ``rho`` P(X hard), ``value`` E[U(X, A)], ``gap`` E[r_t(X, A) - U(X, A)]
    with r_t = (1 +- t)/2, ``proxy`` E[r_t(X, A)], ``hacked`` P(X hard, A = a_1), ``dpv`` the proxy-true
    divergence E[r_hat(X, pi(X)) - U(X, pi(X))] of the fixed greedy policy (r_hat = (1 +- s_greedy)/2),
    ``gap_s`` the gap E[r_hat(X, A) - U(X, A)] of the proxy r_hat = (1 +- s_greedy)/2 under the same draws
    (for a MAPS-shaped t: the gap the reward model reports), and ``se_value`` (the standard error of ``value``).
    """
    kx, ka = jax.random.split(key)
    u = jax.random.uniform(kx, (n_samples,), F64)
    v = jax.random.uniform(ka, (n_samples,), F32)
    lams = jnp.asarray(lams, F64)
    if context:
        idx = tilted_contexts(u, log_mu, t, lams)
    else:
        idx = jnp.broadcast_to(tilted_contexts(u, log_mu, t, jnp.zeros((1,), F64)), (lams.shape[0], n_samples))
    tt, h = t[idx].astype(F32), hard[idx].astype(F32)
    a1 = (v[None, :] < jax.nn.sigmoid(lams[:, None].astype(F32) * tt)).astype(F32)
    U = jnp.where(a1 > 0, u1[idx], u0[idx]).astype(F32)
    r = 0.5 * (1.0 + (2.0 * a1 - 1.0) * tt)
    sg = s_greedy[idx].astype(F32)
    g1 = (sg >= 0).astype(F32)
    gap_s = 0.5 * (1.0 + (2.0 * a1 - 1.0) * sg) - U
    dpv = 0.5 * (1.0 + jnp.abs(sg)) - jnp.where(g1 > 0, u1[idx], u0[idx]).astype(F32)
    return {"rho": jnp.mean(h, -1), "value": jnp.mean(U, -1), "gap": jnp.mean(r - U, -1), "proxy": jnp.mean(r, -1),
            "hacked": jnp.mean(h * a1, -1), "dpv": jnp.mean(dpv, -1), "gap_s": jnp.mean(gap_s, -1), "se_value": jnp.std(U, -1) / jnp.sqrt(n_samples)}


def central_difference(values, lams):
    """d/dlam at the interior grid points by central differences on a (possibly non-uniform) grid.

    Returns (lam_mid (L-2,), derivative (..., L-2)); the second-order formula for uneven spacing
    (``numpy.gradient``'s interior stencil).
    """
    import numpy as np

    lams = np.asarray(lams, float)
    return lams[1:-1], np.gradient(np.asarray(values, float), lams, axis=-1)[..., 1:-1]


def peak(values, lams):
    """Location of the maximum of a sampled curve, refined by a parabola through the top three points.

    Returns nan when the maximum is at the right end of the grid (no downturn observed); 0 at the left end.
    """
    import numpy as np

    lams = np.asarray(lams, float)
    y = np.asarray(values, float)
    i = int(np.argmax(y))
    if i == len(y) - 1:
        return float("nan")
    if i == 0:
        return float(lams[0])
    x0, x1, x2 = lams[i - 1 : i + 2]
    y0, y1, y2 = y[i - 1 : i + 2]
    den = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / den
    b = (x2**2 * (y0 - y1) + x1**2 * (y2 - y0) + x0**2 * (y1 - y2)) / den
    return float(np.clip(-b / (2 * a), x0, x2)) if a < 0 else float(x1)
