"""The v1 Alignment Gap under policy tilting, and its Gaussian and heavy-tailed closed forms.

    pi_beta(y | c) ∝ pi_0(y | c) exp(beta r_hat(c, y)),     gap(beta) = E_{c, y~pi_beta}[r_hat - U].

v1 of the paper (Section 2) defines the gap and claims it grows with beta; its exact theorem is
not available (paper.md 2.3-2.4). What is provable, and implemented here, is the tilting
identity (App. C.2 applied per context):

    d gap / d beta = E_c[Cov_{pi_beta}(r_hat - U, r_hat)],   d E[U] / d beta = E_c[Cov(U, r_hat)],

so the gap grows wherever the error r_hat - U covaries with r_hat, and the true utility peaks
where Cov(U, r_hat) = 0 (related-theory.md section 0). For a jointly Gaussian (U, r_hat) the
tilt is an exact mean shift and the gap is linear in beta (related-theory.md 5.5); with
exponential (light but not Gaussian) and heavy-tailed errors the true utility saturates or
does not move at all (Kwa et al. 2024, related-theory.md section 3).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from murphyjax.theory import numerics as N
from murphyjax.theory import validate as V
from murphyjax.theory.tilting import exponential_score_tilt, tilt


def _context_weights(w, n):
    if w is None:
        return jnp.full((n,), 1.0 / n, V.F64)
    return V.prob_vector("context_weights", w)


def alignment_gap(log_pi0, proxy, true, beta, context_weights=None):
    """The v1 Alignment Gap of pi_beta ∝ pi_0 exp(beta r_hat), with its exact slope.

    Args:
      log_pi0: normalised log pi_0(y | c): shape (Y,) for one context or (C, Y).
      proxy: r_hat(c, y), broadcastable to log_pi0.
      true: U(c, y), broadcastable to log_pi0.
      beta: inverse temperature(s) >= 0 (any shape L). beta = 1/beta_KL of the KL-regularised
        objective (related-theory.md section 0).
      context_weights: distribution over contexts (C,); uniform if None.
    Returns:
      dict over L: ``proxy_mean`` E[r_hat], ``true_mean`` E[U], ``gap`` E[r_hat - U],
      ``slope`` d gap/d beta = E_c Cov(r_hat - U, r_hat), ``true_slope`` E_c Cov(U, r_hat),
      ``kl`` E_c KL(pi_beta(.|c) || pi_0(.|c)).
    """
    lp = V.log_prob_vector("log_pi0", log_pi0)
    r = V.finite("proxy", proxy)
    u = V.finite("true", true)
    V.broadcastable(log_pi0=lp, proxy=r, true=u)
    b = V.nonnegative("beta", beta)
    if lp.ndim == 1:
        lp, r, u = lp[None], jnp.atleast_2d(r), jnp.atleast_2d(u)
    w = _context_weights(context_weights, lp.shape[0])
    t = tilt(lp, r, b)
    e = r - u
    avg = lambda x: jnp.sum(w * x, axis=-1)
    return {
        "proxy_mean": avg(t.mean(r)),
        "true_mean": avg(t.mean(u)),
        "gap": avg(t.mean(e)),
        "slope": avg(t.cov(e, r)),
        "true_slope": avg(t.cov(u, r)),
        "kl": avg(t.kl()),
    }


def true_utility_peak(log_pi0, proxy, true, context_weights=None, beta_max: float = 1e4):
    """The beta at which E_{pi_beta}[U] peaks: the root of E_c Cov_{pi_beta}(U, r_hat) = 0.

    Bisection on [0, beta_max] (the slope is evaluated exactly at every step). Returns a dict
    with ``beta`` (nan if E[U] never turns down on the interval, with ``found`` False),
    ``true_mean`` at the peak and ``found``.
    """
    g = lambda beta: float(alignment_gap(log_pi0, proxy, true, beta, context_weights)["true_slope"])
    lo, hi = 0.0, float(beta_max)
    if g(lo) <= 0:
        return {"beta": 0.0, "true_mean": float(alignment_gap(log_pi0, proxy, true, 0.0, context_weights)["true_mean"]),
                "found": True}
    if g(hi) > 0:
        return {"beta": float("nan"), "true_mean": float("nan"), "found": False}
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if g(mid) > 0:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
    beta = 0.5 * (lo + hi)
    return {"beta": beta, "true_mean": float(alignment_gap(log_pi0, proxy, true, beta, context_weights)["true_mean"]),
            "found": True}


def gaussian_gap(lam, var_true, var_noise, cov_true_noise=0.0):
    """Closed-form gap for proxy = true + noise, (U, N) jointly Gaussian with zero means.

    The tilt by exp(lam P), P = U + N, shifts the mean of (U, P) by lam (Cov(U, P), Var P)
    and leaves the covariance unchanged (related-theory.md 5.5), so

      true_mean = lam (var_true + c),  proxy_mean = lam Var P,  gap = lam (var_noise + c),
      kl = lam^2 Var P / 2,    with c = Cov(U, N), Var P = var_true + var_noise + 2c.

    The gap is linear in lam with slope Cov(N, P); with independent noise the slope is
    var_noise. Vectorised over all arguments.
    """
    lam = V.finite("lam", lam)
    vu = V.nonnegative("var_true", var_true)
    vn = V.nonnegative("var_noise", var_noise)
    c = V.finite("cov_true_noise", cov_true_noise)
    cu, cn, cc = V.concrete(var_true), V.concrete(var_noise), V.concrete(cov_true_noise)
    if cu is not None and cn is not None and cc is not None and np.any(np.asarray(cc) ** 2 > cu * cn * (1 + 1e-12)):
        raise ValueError(
            "cov_true_noise must satisfy cov^2 <= var_true * var_noise (a valid covariance); "
            f"got cov={V._fmt(cc)}, var_true={V._fmt(cu)}, var_noise={V._fmt(cn)}"
        )
    vp = vu + vn + 2.0 * c
    return {
        "true_mean": lam * (vu + c),
        "proxy_mean": lam * vp,
        "gap": lam * (vn + c),
        "slope": vn + c + 0.0 * lam,
        "kl": 0.5 * lam**2 * vp,
    }


def exponential_gap(lam, rate_true, rate_error):
    """Light-but-not-Gaussian error: U ~ Exp(a), N ~ Exp(b) independent, proxy P = U + N.

    The tilt by exp(lam P) factorises: E[U] = 1/(a - lam), E[N] = 1/(b - lam), defined only
    for lam < min(a, b) (else ValueError: the partition function diverges). When the error is
    heavier (b < a), as lam -> b the proxy diverges while E[U] -> 1/(a - b): the true utility
    saturates however hard one optimises (related-theory.md 4.4, 5.5).
    """
    a = V.positive("rate_true", rate_true)
    b = V.positive("rate_error", rate_error)
    tu = exponential_score_tilt(lam, a)
    tn = exponential_score_tilt(lam, b)
    return {
        "true_mean": tu["mean"],
        "error_mean": tn["mean"],
        "proxy_mean": tu["mean"] + tn["mean"],
        "gap": tn["mean"],
        "kl": tu["kl"] + tn["kl"],
        "true_limit": jnp.where(b < a, 1.0 / (a - b), jnp.inf),
    }


# --------------------------------------------------------------------------- heavy tails
def heavy_tail_tilt(lam, error: str = "student_t"):
    """A heavy-tailed proxy error has E[exp(lam X)] = inf for every lam > 0: no tilt exists.

    Kwa et al. (2024) Definition: heavy-tailed iff the MGF is infinite for all t > 0. This
    raises ``ValueError`` for lam > 0 (and returns the identity tilt's log-partition 0 at
    lam = 0). See ``kwa_tail_mixture`` for what optimisation does instead.
    """
    if error not in ("student_t", "lomax", "pareto", "lognormal", "cauchy"):
        raise ValueError(f"error must be one of student_t, lomax, pareto, lognormal, cauchy; got {error!r}")
    lam = V.nonnegative("lam", lam)
    c = V.concrete(lam)
    if c is not None and np.any(c > 0):
        raise ValueError(
            f"lam must be 0 for a {error} error: its moment generating function E[exp(lam X)] is infinite "
            f"for every lam > 0 (heavy tail), so the tilt does not exist; got lam={V._fmt(c)}"
        )
    return jnp.zeros_like(lam)


def kwa_tail_mixture(t, c, tail_index, scale=1.0):
    """Kwa et al. (2024) Theorem 1 on a Lomax (Pareto II) error X, P(X > x) = (1 + x/scale)^-k.

    Construction: keep the law of X below t up to a rescaling and move the mass above t to c/t
    (tail shape unchanged). Returns, in closed form,

      ``error_mean`` E_P[X] = (1 - c/t)/F(t) E_Q[X; X <= t] + (c/t)/Fbar(t) E_Q[X; X > t],
      ``kl``         KL(P || Q) = (1 - c/t) log((1 - c/t)/F(t)) + (c/t) log((c/t)/Fbar(t)),
      ``true_mean_change`` 0: a policy that reweights by the error alone leaves any independent
      true utility V untouched.

    As t -> inf, KL -> 0 (like (c/t) (k - 1) log t) while E_P[X] -> E_Q[X] + c k/(k - 1): the
    proxy gains a fixed amount at vanishing KL and the true utility gains nothing
    (catastrophic Goodhart). Scale c up to make the proxy gain as large as one likes.

    Args:
      t: threshold (> max(c, 0)), any shape.
      c: tail mass times t (> 0).
      tail_index: k > 1 (finite mean).
      scale: Lomax scale > 0.
    """
    t = V.positive("t", t)
    c = V.positive("c", c)
    k = V.interval("tail_index", tail_index, 1.0, np.inf)
    s = V.positive("scale", scale)
    ct, cc = V.concrete(t), V.concrete(c)
    if ct is not None and cc is not None and np.any(ct <= cc):
        raise ValueError(f"t must exceed c so that the moved tail mass c/t is < 1; got t={V._fmt(ct)}, c={V._fmt(cc)}")
    Fbar = (1.0 + t / s) ** (-k)
    F = 1.0 - Fbar
    m_tail = c / t
    # E_Q[X; X > t] and E_Q[X; X <= t] for the Lomax law (mean s/(k-1))
    tail_part = Fbar * (t + (s + t) / (k - 1.0))
    body_part = s / (k - 1.0) - tail_part
    mean_p = (1.0 - m_tail) / F * body_part + m_tail / Fbar * tail_part
    kl = (1.0 - m_tail) * jnp.log((1.0 - m_tail) / F) + m_tail * jnp.log(m_tail / Fbar)
    return {"error_mean": mean_p, "kl": kl, "base_error_mean": s / (k - 1.0) + 0.0 * t,
            "true_mean_change": jnp.zeros_like(mean_p)}


def _mills(z):
    """Inverse Mills ratio phi(z) / P(Z >= z) of the standard normal, without exp overflow or cancellation."""
    pos = jnp.maximum(z, 0.0)
    neg = jnp.minimum(z, 0.0)
    right = np.sqrt(2.0 / np.pi) / N.erfcx(pos / np.sqrt(2.0))
    left = jnp.exp(-0.5 * neg**2) / np.sqrt(2.0 * np.pi) / jax.scipy.special.ndtr(-neg)
    return jnp.where(z > 0, right, left)


def _log_normal_sf_scaled(z):
    """log P(Z >= z) + max(z, 0)^2 / 2 of the standard normal (relative error ~1e-16; jax's log_ndtr
    is ~1e-11 in the tail). The Gaussian factor is left out so that callers can add it once."""
    right = jnp.log(0.5 * N.erfcx(jnp.maximum(z, 0.0) / np.sqrt(2.0)))
    left = N.log1p(-jax.scipy.special.ndtr(jnp.minimum(z, 0.0)))
    return jnp.where(z > 0, right, left)


def conditional_true_mean(threshold, error: str = "normal", error_scale=1.0, df=3.0, num: int = 2049):
    """E[V | V + X >= t] for V ~ N(0, 1) and an independent error X (the best-of-n limit).

    Conditioning on the proxy exceeding a threshold is what best-of-n does as n grows. For a
    light-tailed normal error E[V | V + X >= t] -> infinity (Kwa et al. Thm 6; Gao's
    regressional identity); for a heavy-tailed Student-t error it returns to E[V] = 0 (Thm 5).

    Normal error X ~ N(0, s^2): P = V + X ~ N(0, sigma^2), sigma^2 = 1 + s^2, and E[V | P] =
    P / sigma^2, so E[V | P >= t] = m(t / sigma) / sigma with m the inverse Mills ratio
    phi(z) / P(Z >= z), evaluated through erfcx (no underflow: ~ t / sigma^2 for large t).
    Relative error below 1e-15 for t >= 0 (checked against 50-digit arithmetic up to t = 1e8
    sigma) and about (1 + (t / sigma)^2) 2e-16 for t < 0 (the rounding of t / sigma, amplified by
    phi: below 3e-13); 0 below about -38 sigma, where the value underflows.

    Student-t error X = s T_nu: a scale mixture of normals, X | G ~ N(0, s^2 k / G) with
    G ~ Gamma(k = nu/2). For fixed G, E[V 1{P >= t}] = phi(t / sigma_G) / sigma_G with
    sigma_G^2 = 1 + s^2 k / G, so in y = log G

        E[V | P >= t] = N / D,   N = int e^(k y - e^y) phi(t / sigma_G) / sigma_G dy,
                                 D = int e^(k y - e^y) P(Z >= t / sigma_G) dy.

    Both log-integrands are evaluated on a coarse grid spanning every place either mass can sit
    (the prior bulk y ~ log k; down to sigma_G ~ t for t > 1; and, for N, which is even in t,
    down to e^y ~ k / (1 + t^2 / (2 s^2 k))), then both integrals are taken by the trapezoidal
    rule on ``num`` nodes over the union of the windows where either integrand is within e^-45
    of its maximum. All terms are positive, the two sums share their large factor
    e^(k y - e^y - max(z, 0)^2 / 2), z = t / sigma_G (its rounding cancels in the ratio), and the
    window follows the mass however far t is in either tail (for t << 0 the mass of N sits far
    below that of D).
    Relative error below 1e-13 for df in [0.2, 100], s in [1e-3, 1e3] and |t| <= 100 max(s, 1)
    (measured <= 1.5e-14 against 30-digit Gauss-Legendre quadrature of N and D), 0 where the
    value underflows; at t = 1e6 it equals the asymptote nu / t to within its O(t^-2) correction.

    Args:
      threshold: t (any shape).
      error: "normal" or "student_t".
      error_scale: scale s of X (> 0).
      df: degrees of freedom of the Student-t error (> 0).
      num: quadrature nodes of the Student-t window (the coarse search uses 2 num).
    """
    t = V.finite("threshold", threshold)
    sc = V.positive("error_scale", error_scale)
    if error == "normal":
        sigma = jnp.sqrt(1.0 + sc**2)
        return _mills(t / sigma) / sigma
    if error != "student_t":
        raise ValueError(f"error must be 'normal' or 'student_t'; got {error!r}")
    k = 0.5 * V.positive("df", df)
    shape = jnp.broadcast_shapes(t.shape, sc.shape, k.shape)
    t, sc, k = (x.reshape(-1, 1) for x in jnp.broadcast_arrays(t, sc, k))
    return _student_t_mean(t, sc, k, num).reshape(shape)


@functools.partial(jax.jit, static_argnums=3)
def _student_t_mean(t, sc, k, num):
    """``conditional_true_mean`` for a Student-t error on (M, 1) columns t, s and k = df / 2."""
    log_a = jnp.log(sc**2 * k)  # sigma_G^2 = 1 + exp(log_a - y)

    def log_parts(y):
        """log of the denominator's integrand in y = log G, and the log of the numerator's over it."""
        log_s2 = jnp.logaddexp(0.0, log_a - y)
        z = t * jnp.exp(-0.5 * log_s2)
        zp = jnp.maximum(z, 0.0)
        sf = _log_normal_sf_scaled(z)
        return k * y - jnp.exp(y) - 0.5 * zp * zp + sf, -sf - 0.5 * (z * z - zp * zp) - 0.5 * log_s2

    # where the mass can be: the prior bulk (y ~ log k), down to sigma_G = t for t > 1, and for
    # the numerator (even in t) down to exp(y) ~ k / (1 + t^2 / (2 s^2 k))
    y_ref = jnp.minimum(jnp.log(k), jnp.log(k) - N.log1p(t * t / (2.0 * jnp.exp(log_a))))
    y_ref = jnp.minimum(y_ref, jnp.where(t > 1.0, log_a - jnp.log(jnp.maximum(t**2 - 1.0, 1e-300)), jnp.inf))
    lo = y_ref - 47.0 / k - 2.0
    hi = jnp.log(k + 40.0 * jnp.sqrt(k) + 60.0)
    yc = lo + (hi - lo) * jnp.linspace(0.0, 1.0, 2 * num)
    ld, li = log_parts(yc)
    inside = jnp.zeros(yc.shape, bool)
    for lc in (ld, ld + li):
        inside |= lc >= jnp.max(lc, axis=1, keepdims=True) - 45.0
    first = jnp.argmax(inside, axis=1)
    last = inside.shape[1] - 1 - jnp.argmax(inside[:, ::-1], axis=1)
    step = (hi - lo)[:, 0] / (2 * num - 1)
    a = jnp.take_along_axis(yc, first[:, None], 1) - step[:, None]
    b = jnp.take_along_axis(yc, last[:, None], 1) + step[:, None]
    y = a + (b - a) * jnp.linspace(0.0, 1.0, num)
    end = jnp.ones(num).at[0].set(0.5).at[-1].set(0.5)  # trapezoidal weights (the step cancels)
    ld, li = log_parts(y)
    # both sums share the terms exp(ld - max ld), so the rounding of the large log-density
    # (k y - e^y - z^2/2, of size up to ~1e3) cancels in the ratio
    d = ld - jnp.max(ld, axis=1, keepdims=True)
    x = d + li
    c = jnp.max(x, axis=1)
    ratio = jnp.sum(end * jnp.exp(x - c[:, None]), axis=1) / jnp.sum(end * jnp.exp(d), axis=1)
    return jnp.exp(c) * ratio / np.sqrt(2.0 * np.pi)
