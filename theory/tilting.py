"""Exponential tilting of a base distribution by a score (paper Section 3.4 and Appendix C).

    dq_lam / dmu (x) = exp(lam s(x) - A(lam)),      A(lam) = log E_mu[exp(lam s(X))].

Finite outcome sets are handled exactly (log-sum-exp in float64); Gaussian families and the
exponential-tailed score in closed form. The identities of C.2 hold by construction and are
checked against autodiff in ``theory/checks``:

    A'(lam) = E_q[s],  A''(lam) = Var_q(s),  d/dlam E_q[f] = Cov_q(f, s),
    KL(q || mu) = lam A'(lam) - A(lam),  KL(mu || q) = A(lam) - lam E_mu[s],
    d/dlam KL(q || mu) = lam Var_q(s).

Note (paper note 9.13): tilting the *context* law q_lam (Section 3.4, App. C) and tilting the
*policy* pi_beta ∝ pi_0 exp(beta r_hat) (the v1 Alignment Gap, ``theory/gap.py``) are the same
mathematics applied to different objects; the code keeps them apart by name.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from murphyjax.theory import numerics as N
from murphyjax.theory import validate as V


# --------------------------------------------------------------------------- finite tilt
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Tilt:
    """The tilted law q_lam on a finite outcome set (App. C.1), for one or many lambdas.

    Shapes: ``lam`` has shape L (any, possibly ()); the base has batch shape B and K outcomes;
    ``log_probs``/``probs`` have shape L + B + (K,), ``log_partition`` L + B. Functions f, g
    passed to the moment methods are arrays over outcomes, broadcastable to B + (K,).
    """

    lam: jax.Array
    log_base: jax.Array
    score: jax.Array
    log_probs: jax.Array
    log_partition: jax.Array

    @property
    def probs(self) -> jax.Array:
        return jnp.exp(self.log_probs)

    def _lam(self) -> jax.Array:
        """lam broadcast against the batch axes B (without the outcome axis)."""
        nb = self.log_partition.ndim - self.lam.ndim
        return self.lam.reshape(self.lam.shape + (1,) * nb)

    def mean(self, f) -> jax.Array:
        """E_q[f]."""
        return jnp.sum(self.probs * jnp.asarray(f, V.F64), axis=-1)

    def cov(self, f, g) -> jax.Array:
        """Cov_q(f, g), computed on centred values (two-pass, no cancellation)."""
        f = jnp.asarray(f, V.F64)
        g = jnp.asarray(g, V.F64)
        fc = f - self.mean(f)[..., None]
        gc = g - self.mean(g)[..., None]
        return jnp.sum(self.probs * fc * gc, axis=-1)

    def var(self, f) -> jax.Array:
        """Var_q(f)."""
        return self.cov(f, f)

    def _log_ratio(self):
        """(log(q / mu), log sum mu) with log(q / mu) = lam (s - s*) - log E_mu[exp(lam (s - s*))].

        s* is the score at the mode of q: centring there keeps every term O(1) however large
        lam is (lam s - A is a difference of two numbers of size lam max s). mu is taken as
        given (normalised only to the validation tolerance); the ratio is to mu / sum(mu)."""
        lam = self._lam()[..., None]
        s = jnp.broadcast_to(self.score, self.log_probs.shape)
        s_star = jnp.take_along_axis(s, jnp.argmax(self.log_probs, axis=-1)[..., None], axis=-1)
        x = lam * (s - s_star)
        log_total = logsumexp(self.log_base, axis=-1, keepdims=True)
        # log E_mu[e^x] as log1p(E_mu[expm1(x)]) while that is small: its absolute error is then
        # ~1e-16 E_mu|x| instead of logsumexp's ~1e-16, which would add ~1e-32 to a KL of lam^2 Var/2
        r = jnp.sum(jnp.exp(self.log_base - log_total) * jnp.expm1(x), axis=-1, keepdims=True)
        small = jnp.abs(r) < 0.5
        log_z = jnp.where(small, N.log1p(jnp.where(small, r, 0.0)),
                          logsumexp(self.log_base + x, axis=-1, keepdims=True) - log_total)
        return x - log_z, log_total[..., 0]

    def kl(self) -> jax.Array:
        """KL(q_lam || mu) = lam A'(lam) - A(lam) (App. C.2).

        Summed as sum_x [q log(q/mu) - q + mu], a sum of non-negative terms (``numerics.
        bregman_log``; the added terms total 0), with log(q/mu) centred at the mode of q. The
        difference lam A' - A cancels at small lam (KL ~ lam^2 Var(s)/2, relative error 1e-16 /
        KL) and at large lam (both terms ~ lam max s); this form has relative error below 1e-13
        for every finite lam (checked against mpmath for |lam| from 1e-150 to 1e12, wherever the
        KL exceeds 1e-300). An absolute error delta of the log-partition moves the KL by about
        delta KL + delta^2 / 2, so the log-partition is summed as log1p(E_mu[expm1(x)]) while that
        is small: delta ~ 1e-16 E_mu|x| (logsumexp's delta ~ 1e-16 would be 1e-7 of a KL of 1e-24).
        """
        ell, log_total = self._log_ratio()
        return jnp.sum(N.bregman_log(self.log_base + ell, self.log_base, ell), axis=-1) * jnp.exp(-log_total)

    def reverse_kl(self) -> jax.Array:
        """KL(mu || q_lam) = A(lam) - lam E_mu[s] (App. C.2).

        Summed as sum_x [mu log(mu/q) - mu + q] (non-negative terms, as in ``kl``): relative
        error below 1e-13 for every finite lam (checked as ``kl``).
        """
        ell, log_total = self._log_ratio()
        return jnp.sum(N.bregman_log(self.log_base, self.log_base + ell, -ell), axis=-1) * jnp.exp(-log_total)

    def kl_direct(self) -> jax.Array:
        """KL(q || mu) summed outcome by outcome (the independent computation of ``kl``)."""
        q = self.probs
        d = jnp.where(q > 0, self.log_probs - jnp.where(q > 0, self.log_base, 0.0), 0.0)
        return jnp.sum(q * d, axis=-1)

    def dkl_dlam(self) -> jax.Array:
        """d/dlam KL(q_lam || mu) = lam Var_q(s) (App. C.2)."""
        return self._lam() * self.var(self.score)


def tilt(log_base, score, lam) -> Tilt:
    """Tilt a finite base law by a score: q_lam(x) ∝ mu(x) exp(lam s(x)) (App. C.1).

    Args:
      log_base: normalised log-probabilities of mu over K outcomes (last axis; may be -inf),
        with optional leading batch axes B (e.g. one row per context for a policy tilt).
      score: s(x), finite, broadcastable to the base's shape.
      lam: tilt parameter(s), finite; scalar or any array shape L (vectorised).
    Returns:
      A :class:`Tilt` with probabilities of shape L + B + (K,).
    """
    lb = V.log_prob_vector("log_base", log_base)
    s = V.finite("score", score)
    V.broadcastable(log_base=lb, score=s)
    lam = V.finite("lam", lam)
    return _tilt(lb, s, lam)


@jax.jit
def _tilt(lb, s, lam):
    lam_b = lam.reshape(lam.shape + (1,) * lb.ndim)
    # -inf outcomes stay -inf (0 * lam * s never produces NaN because s is finite)
    logits = lb + lam_b * s
    A = logsumexp(logits, axis=-1)
    s_full = jnp.broadcast_to(s, jnp.broadcast_shapes(s.shape, lb.shape))
    return Tilt(lam, lb, s_full, logits - A[..., None], A)


def log_partition(log_base, score, lam):
    """A(lam) = log E_mu[exp(lam s)] on a finite outcome set (differentiable in lam)."""
    return tilt(log_base, score, lam).log_partition


# --------------------------------------------------------------------------- hard mass
def hard_mass(log_base, score, hard, lam):
    """rho(lam) = q_lam(X_hard) = E_q[H] (Section 3.4, Prop. 1)."""
    return tilt(log_base, score, lam).mean(V.probability("hard", hard))


def hard_mass_drift(log_base, score, hard, lam):
    """Propositions 1-2: rho'(lam) = Cov_q(H, s) and d log rho / d lam = Cov_q(H, s) / rho.

    Returns a dict with ``rho``, ``drift`` (rho') and ``log_drift`` (d log rho / d lam).
    (The main-text proof of Prop. 1 omits the normaliser; A.7 is correct: paper note 9.9.)
    """
    h = V.probability("hard", hard)
    t = tilt(log_base, score, lam)
    rho = t.mean(h)
    c = t.cov(h, t.score)
    return {"rho": rho, "drift": c, "log_drift": c / rho}


def hard_mass_first_order(log_base, score, hard, lam):
    """C.3 eq. (3): rho(lam) = alpha + lam Cov_mu(H, s) + o(lam)."""
    h = V.probability("hard", hard)
    base = tilt(log_base, score, 0.0)
    lam = V.finite("lam", lam)
    return base.mean(h) + lam * base.cov(h, base.score)


def hard_mass_cs_bound(log_base, score, hard, lam):
    """C.4: |rho'(lam)| <= sqrt(rho (1 - rho)) sqrt(A''(lam)) (Cauchy-Schwarz)."""
    h = V.probability("hard", hard)
    t = tilt(log_base, score, lam)
    rho = t.mean(h)
    return jnp.sqrt(rho * (1.0 - rho)) * jnp.sqrt(t.var(t.score))


def hard_mass_cs_integrated(log_base, score, hard, lam, num: int = 4001):
    """C.4 integrated: |rho(lam) - rho(0)| <= int_0^|lam| sqrt(rho(1-rho)) sqrt(A''(+-t)) dt.

    Evaluated with Simpson's rule on ``num`` points (odd); ``lam`` is a scalar.
    """
    lam = float(V.finite("lam", lam))
    if num < 3 or num % 2 == 0:
        raise ValueError(f"num must be an odd integer >= 3; got {num}")
    ts = jnp.linspace(0.0, lam, num)
    b = hard_mass_cs_bound(log_base, score, hard, ts)
    w = jnp.ones(num).at[1:-1:2].set(4.0).at[2:-1:2].set(2.0)
    return jnp.abs(lam) / (3.0 * (num - 1)) * jnp.sum(w * b, axis=0)


# --------------------------------------------------------------------------- vector tilt
def vector_tilt(log_base, scores, theta):
    """C.6 vector tilting: dq_theta/dmu ∝ exp(<theta, s(x)>) for s = (s_1..s_k).

    Args:
      log_base: normalised log-probabilities (K,).
      scores: (K, k) matrix of the k scores.
      theta: (k,) natural parameter.
    Returns:
      dict with ``log_partition`` A(theta), ``probs`` (K,), ``mean`` = E_q[s] = grad A (k,),
      ``cov`` = Cov_q(s, s) = Hessian of A (k, k).
    """
    lb = V.log_prob_vector("log_base", log_base)
    S = V.finite("scores", scores)
    th = V.finite("theta", theta)
    if S.ndim != 2 or S.shape[0] != lb.shape[-1] or th.shape != (S.shape[1],):
        raise ValueError(
            f"shapes must be log_base (K,), scores (K, k), theta (k,); got {lb.shape}, {S.shape}, {th.shape}"
        )
    logits = lb + S @ th
    A = logsumexp(logits)
    q = jnp.exp(logits - A)
    m = q @ S
    C = (S - m).T @ ((S - m) * q[:, None])
    return {"log_partition": A, "probs": q, "mean": m, "cov": C}


def vector_log_partition(log_base, scores, theta):
    """A(theta) of ``vector_tilt`` as a plain function (for jax.grad / jax.hessian)."""
    return logsumexp(jnp.asarray(log_base, V.F64) + jnp.asarray(scores, V.F64) @ jnp.asarray(theta, V.F64))


# --------------------------------------------------------------------------- I-projection
def i_projection(log_base, score, target_mean):
    """C.5: the I-projection of mu onto {Q : E_Q[s] = m} is the tilt q_lam* with A'(lam*) = m.

    Solves the monotone equation E_{q_lam}[s] = m by bracketing, bisection (to machine
    precision) and two Newton polishing steps (A'' = Var_q(s) > 0). Vectorised over
    ``target_mean``.

    Args:
      log_base: normalised log-probabilities (K,).
      score: s (K,), not constant on the support of mu.
      target_mean: m, strictly between min and max of s on the support of mu.
    Returns:
      (lam_star, Tilt at lam_star).
    """
    lb = V.log_prob_vector("log_base", log_base)
    s = V.finite("score", score)
    m = V.finite("target_mean", target_mean)
    cs, cl, cm = V.concrete(s), V.concrete(lb), V.concrete(target_mean)
    if cs is not None and cl is not None and cm is not None:
        import numpy as np

        sup = np.broadcast_to(cs, cl.shape)[np.isfinite(cl)]
        lo, hi = sup.min(), sup.max()
        if not (np.all(cm > lo) and np.all(cm < hi)):
            raise ValueError(
                f"target_mean must lie strictly between min and max of score on the support, "
                f"({lo:.6g}, {hi:.6g}); got {V._fmt(cm)}"
            )
    lam = jax.vmap(lambda mm: _solve_mean(lb, s, mm))(m.reshape(-1)).reshape(m.shape)
    return lam, tilt(lb, s, lam)


@jax.jit
def _solve_mean(lb, s, m):
    def mean_at(lam):
        return jnp.sum(jax.nn.softmax(lb + lam * s) * s)

    def expand(c):
        lo, hi = c
        return jnp.where(mean_at(lo) > m, 2 * lo, lo), jnp.where(mean_at(hi) < m, 2 * hi, hi)

    def need(c):
        lo, hi = c
        return (mean_at(lo) > m) | (mean_at(hi) < m)

    lo, hi = jax.lax.while_loop(need, expand, (jnp.asarray(-1.0, V.F64), jnp.asarray(1.0, V.F64)))

    def bisect(_, c):
        lo, hi = c
        mid = 0.5 * (lo + hi)
        up = mean_at(mid) < m
        return jnp.where(up, mid, lo), jnp.where(up, hi, mid)

    lo, hi = jax.lax.fori_loop(0, 200, bisect, (lo, hi))
    lam = 0.5 * (lo + hi)
    for _ in range(2):
        q = jax.nn.softmax(lb + lam * s)
        mu_ = jnp.sum(q * s)
        var = jnp.sum(q * (s - mu_) ** 2)
        lam = lam - (mu_ - m) / var
    return lam


# --------------------------------------------------------------------------- closed forms
def gaussian_tilt(lam, mean, cov, direction):
    """Tilt of X ~ N(mean, cov) by the linear score s(x) = <a, x> (closed form).

    q_lam = N(mean + lam cov a, cov): an exact mean shift. A(lam) = lam <a, mean> +
    lam^2 a'cov a / 2, KL(q || mu) = KL(mu || q) = lam^2 a'cov a / 2.

    Args:
      lam: scalar or array of lambdas (shape L).
      mean: (d,), cov: (d, d) symmetric positive semi-definite, direction: a (d,).
    Returns:
      dict with ``mean`` (L + (d,)), ``cov`` (d, d), ``log_partition``, ``kl``, ``reverse_kl``,
      ``score_mean`` (E_q[s]) and ``score_var`` (Var(s), unchanged by the tilt).
    """
    lam = V.finite("lam", lam)
    m = jnp.atleast_1d(V.finite("mean", mean))
    C = jnp.atleast_2d(V.finite("cov", cov))
    a = jnp.atleast_1d(V.finite("direction", direction))
    if C.shape != (m.shape[0], m.shape[0]) or a.shape != m.shape:
        raise ValueError(f"shapes must be mean (d,), cov (d, d), direction (d,); got {m.shape}, {C.shape}, {a.shape}")
    cc = V.concrete(C)
    if cc is not None:
        import numpy as np

        if not np.allclose(cc, cc.T, atol=1e-12) or np.linalg.eigvalsh((cc + cc.T) / 2).min() < -1e-12:
            raise ValueError("cov must be symmetric positive semi-definite")
    Ca = C @ a
    v = a @ Ca
    lam_b = lam[..., None]
    A = lam * (a @ m) + 0.5 * lam**2 * v
    kl = 0.5 * lam**2 * v
    return {"mean": m + lam_b * Ca, "cov": C, "log_partition": A, "kl": kl, "reverse_kl": kl,
            "score_mean": a @ m + lam * v, "score_var": v}


def exponential_score_tilt(lam, rate):
    """Tilt of X ~ Exp(rate) by s(x) = x: q_lam = Exp(rate - lam), defined only for lam < rate.

    A(lam) = log(rate / (rate - lam)); E_q[X] = 1/(rate - lam); Var_q = 1/(rate - lam)^2;
    KL(q || mu) = lam/(rate - lam) - A(lam), KL(mu || q) = A(lam) - lam/rate (both summed without
    cancellation: relative error below 1e-14 for every lam < rate, small lam included). For
    lam >= rate the partition function E[exp(lam X)] is infinite and no tilt exists: this raises
    ``ValueError`` (never inf/NaN).
    """
    r = V.positive("rate", rate)
    lam = V.finite("lam", lam)
    cl, cr = V.concrete(lam), V.concrete(rate)
    if cl is not None and cr is not None:
        import numpy as np

        if np.any(np.broadcast_to(cl, np.broadcast_shapes(cl.shape, cr.shape)) >= cr):
            raise ValueError(
                f"lam must be < rate={V._fmt(cr)}: the partition function E[exp(lam X)] of an "
                f"Exp(rate) score diverges for lam >= rate; got lam={V._fmt(cl)}"
            )
    d = r - lam
    A = jnp.log(r / d)
    # lam/d - log(r/d) and log(r/d) - lam/r cancel for small lam (both ~ lam^2 / 2 r^2): each is
    # bd0(1, m) = m - 1 - log m (``numerics.bregman``), with m = r/d and d/r; relative error ~1e-15
    return {"log_partition": A, "mean": 1.0 / d, "var": 1.0 / d**2, "kl": N.bregman(1.0, r / d, -lam / d),
            "reverse_kl": N.bregman(1.0, d / r, lam / r)}
