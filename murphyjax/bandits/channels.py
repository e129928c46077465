"""Feedback channels (arXiv:2509.05381 v3, Sections 2.2, 2.9, 5.8, B.1, B.8).

Labels are relative to a fixed reference action (paper note 9.1): ``Z = 1{label favours pi^+(x)}``.
Read literally with a world-dependent "truly better" action the two worlds' label laws coincide
(KL = 0) and nothing is learnable; the proofs (Z_i with mean 1/2 +- eps) need the fixed reference.

* Hard contexts: P_w(Z = 1) = 1/2 + w eps(x, t).
* Easy contexts: pi^+ = pi^- there, so a label either carries no information (``easy_eps = 0``,
  the theory of Section 2) or is right with its own accuracy 1/2 + easy_eps in both worlds (what
  the Section 3 learner needs to learn theta). The laboratory's defaults: ``easy_eps = 0`` for the
  two-point testing problem (Theorem 1's channel) and ``easy_eps = 0.3`` (80 % accurate
  annotators) for the logistic learner of Section 3.
* eps may depend on the context (B.1: ``heterogeneous_eps``) and on time (annotator drift,
  Section 5.8: ``drift_eps``).
* Scalar ratings (Section 2.9, A.8): R in [0, 1] with density f_w(r) = 1 + w c (2r - 1) on hard
  contexts; the log-likelihood ratio is bounded by 2 atanh(c) and the per-hit KL is
  ``rating_kl(c) = 1 - (1 - c^2) atanh(c) / c`` (~ 2c^2/3), computed here (it is not in theory/).

All samplers are float32; the KL helpers follow the input dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from murphyjax.theory import validate as V
from murphyjax.theory import numerics as N

F32 = jnp.float32


def massart_p(z, w, eps, easy_eps=0.0):
    """P_w(Z = 1 | x): 1/2 + w eps on hard contexts (z = 1), 1/2 + easy_eps on easy ones.

    Z = 1{label favours the reference action pi^+(x)} (note 9.1). ``z`` may be a probability
    P(z = 1 | x) when hardness is latent: the label law given x is then the mixture
    1/2 + z w eps + (1 - z) easy_eps.
    """
    return 0.5 + z * w * eps + (1.0 - z) * easy_eps


def labels_for_action(p_ref, ref_is_a1):
    """Turn P(label favours pi^+(x)) into P(label favours a_1): p if pi^+(x) = a_1 else 1 - p."""
    return jnp.where(ref_is_a1, p_ref, 1.0 - p_ref)


def bernoulli(u, p):
    """A Bernoulli(p) label from a uniform u (common random numbers across worlds): 1{u < p}."""
    return (u < p).astype(F32)


def label_kl(p_plus, p_minus):
    """Per-round KL(P^+(Z | obs) || P^-(Z | obs)) between the worlds' label laws (Lemma 4's term).

    With p_plus = 1/2 + eps and p_minus = 1/2 - eps this is kappa(eps) (Lemma 1). Equal to
    ``theory.bernoulli_kl`` (the same cancellation-free sum of two non-negative terms, relative
    error below 1e-13 in float64, a few float32 ulp in float32) without its validation, so it
    traces under jit; p_plus in [0, 1], p_minus in (0, 1).
    """
    return N.bernoulli_kl(p_plus, p_minus)


def label_llr(Z, p_plus, p_minus):
    """log P^+(Z | obs) / P^-(Z | obs) of an observed label; its mean under P^+ is ``label_kl``."""
    return jnp.where(Z > 0, jnp.log(p_plus) - jnp.log(p_minus), jnp.log1p(-p_plus) - jnp.log1p(-p_minus))


def heterogeneous_eps(eps, spread, u):
    """B.1: eps(x) = eps (1 + spread tanh(u)) with u a scalar feature of x (e.g. a projection).

    Requires eps (1 + spread) < 1/2 and 0 <= spread < 1 so eps(x) stays in (0, 1/2).
    Validate with :func:`validate_heterogeneous` before tracing.
    """
    return eps * (1.0 + spread * jnp.tanh(u))


def validate_heterogeneous(eps, spread):
    V.eps(eps)
    V.interval("spread", spread, 0.0, 1.0, lo_closed=True)
    if eps * (1 + spread) >= 0.5:
        raise ValueError(f"eps (1 + spread) must stay below 1/2; got eps={eps!r}, spread={spread!r}")


def drift_eps(eps_start, eps_end, t, horizon):
    """Annotator drift (Section 5.8): eps_t moves linearly from eps_start (t = 0) to eps_end (t = horizon - 1)."""
    frac = jnp.asarray(t, F32) / jnp.maximum(horizon - 1, 1)
    return eps_start + (eps_end - eps_start) * frac


def validate_drift(eps_start, eps_end):
    V.eps(eps_start, "eps_start")
    V.eps(eps_end, "eps_end")


# --------------------------------------------------------------------------- scalar ratings
def rating_sample(key, w, c, shape=()):
    """R ~ f_w(r) = 1 + w c (2r - 1) on [0, 1] by inversion (F_w(r) = r + w c (r^2 - r)).

    The root of w c r^2 + (1 - w c) r - u = 0 in [0, 1] is written as 2u / (b + sqrt(b^2 + 4 a u))
    with a = w c, b = 1 - a: stable at a = 0 (no 0/0).
    """
    u = jax.random.uniform(key, shape, F32)
    a = w * c
    b = 1.0 - a
    return 2.0 * u / (b + jnp.sqrt(b * b + 4.0 * a * u))


def rating_llr(r, c):
    """log f_+(r) / f_-(r) = log(1 + c(2r - 1)) - log(1 - c(2r - 1)) = 2 atanh(c (2r - 1)); |.| <= 2 atanh(c)."""
    return 2.0 * jnp.arctanh(c * (2.0 * r - 1.0))


def rating_kl(c):
    """Per-hit KL(f_+ || f_-) = 1 - (1 - c^2) atanh(c) / c for the linear rating density (c in (0, 1)).

    Derivation: KL = (1/2) int_{-1}^{1} (1 + c u) 2 atanh(c u) du = (2/c) int_0^c v atanh(v) dv and
    int v atanh(v) dv = ((v^2 - 1) atanh(v) + v) / 2. The closed form cancels for small c, so
    c < 1/2 sums its series sum_{k>=1} 2 c^(2k) / (4 k^2 - 1) = 2c^2/3 + 2c^4/15 + ... (30 terms);
    c >= 1/2 uses the closed form with 1 - c^2 = (1 - c)(1 + c) and atanh(c) = log((1 + c)/(1 - c))/2
    (XLA's arctanh is off by up to 2e-14 there). Relative error below 1e-14 on
    (0, 1) (checked against 700-digit arithmetic).
    """
    c = V.interval("c", c, 0.0, 1.0)
    w = c * c
    series = 0.0
    for k in range(30, 0, -1):
        series = (series + 2.0 / (4.0 * k * k - 1.0)) * w
    big = jnp.maximum(c, 0.5)
    closed = 1.0 - (1.0 - big) * (1.0 + big) * 0.5 * jnp.log((1.0 + big) / (1.0 - big)) / big
    return jnp.where(c < 0.5, series, closed)
